"""The add-ons' copy of the memory modes (bridge.protocol.MEMORY_MODES) says what the engine says."""

from __future__ import annotations

from samroto.bridge import protocol
from samroto.core.memory_modes import explanations


def test_the_bridge_table_matches_the_engine_registry() -> None:
    assert dict(protocol.MEMORY_MODES) == explanations()
    assert [name for name, _ in protocol.MEMORY_MODES] == list(explanations())  # the default first
    assert protocol.DEFAULT_MEMORY_MODE == "sam2"
