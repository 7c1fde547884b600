"""The names `samroto.core` and `samroto.bridge` promise, pinned: removing or renaming one fails here."""

from __future__ import annotations

import importlib

import pytest

import samroto.bridge
import samroto.core

CORE_NAMES = {
    "load_model", "build_model", "download_checkpoint", "SAM2Model", "SAM2Config", "PRESETS", "load_config_file",
    "ConfigError", "CheckpointError", "DownloadError",
    "VideoSession", "SessionOptions", "SessionError", "FrameResult", "ImagePredictor",
    "open_frames", "FrameSource", "FrameError", "ViewTransform", "ColourSettings", "ColourError", "stroke_to_prompt",
    "Sidecar", "SidecarError", "load_sidecar", "save_sidecar", "session_to_sidecar", "apply_prompts",
    "MatteOutput", "MatteOptions", "MatteSequenceWriter", "matte_from_logits", "read_matte",
    "masks_to_shapes", "ShapeOptions", "ShapeTrack", "RefineOptions", "SmoothOptions", "ConfidenceTracker",
}

BRIDGE_NAMES = {
    "PROTOCOL_VERSION", "client_files", "Client", "RemoteSession", "Propagation", "FrameUpdate", "FrameMattes",
    "WorkerInfo", "pushed_plate", "find_worker_address", "BridgeError", "ConnectionTimeout", "AuthenticationError",
    "ProtocolMismatch", "RemoteError", "BadRequest", "NoSuchSession", "WorkerBusy", "NotImplementedByWorker",
}


def test_core_exports_exactly_the_public_names() -> None:
    assert set(samroto.core.__all__) == CORE_NAMES


@pytest.mark.parametrize("name", sorted(CORE_NAMES))
def test_each_core_name_is_the_object_its_module_defines(name: str) -> None:
    value = getattr(samroto.core, name)
    module = importlib.import_module(samroto.core._EXPORTS[name], "samroto.core")
    assert value is getattr(module, name)


def test_unknown_names_raise_attribute_error() -> None:
    with pytest.raises(AttributeError):
        samroto.core.no_such_name  # noqa: B018


def test_bridge_keeps_its_client_names() -> None:
    assert set(BRIDGE_NAMES) <= set(samroto.bridge.__all__)
    for name in BRIDGE_NAMES:
        assert getattr(samroto.bridge, name) is not None
