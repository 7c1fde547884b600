"""PROTOCOL.md and protocol.py describe the same protocol."""

from __future__ import annotations

import re
from pathlib import Path

from samroto.bridge import protocol

DOC = (Path(protocol.__file__).parent / "PROTOCOL.md").read_text()


def test_the_spec_names_its_version() -> None:
    assert DOC.startswith("# samroto worker protocol, version %s" % protocol.version_string())
    assert "`v` is `[%d, %d]`" % protocol.PROTOCOL_VERSION in DOC


def test_every_request_type_and_error_code_is_documented() -> None:
    documented = set(re.findall(r"^\| `([a-z_]+)`", DOC, flags=re.MULTILINE))
    assert set(protocol.REQUEST_TYPES) <= documented, set(protocol.REQUEST_TYPES) - documented
    for code in (v for k, v in vars(protocol).items() if k.startswith("E_")):
        assert "`%s`" % code in DOC, code
    for mtype in (protocol.ACCEPTED, protocol.FRAME, protocol.DONE, protocol.CANCELLED, protocol.KEEPALIVE):
        assert mtype in DOC
    for dtype in protocol.BUFFER_DTYPES:
        assert "`%s`" % dtype in DOC


def test_the_documented_defaults_are_the_real_ones() -> None:
    limits = protocol.DEFAULT_LIMITS
    assert "whole message %d MiB" % (limits.max_message_bytes // 2 ** 20) in DOC
    assert "header %d KiB" % (limits.max_header_bytes // 1024) in DOC
    assert "body %d MiB" % (limits.max_body_bytes // 2 ** 20) in DOC
    assert "%d buffers" % limits.max_buffers in DOC
    assert "more than %d s from" % limits.replay_window_s in DOC
    assert "default %d)" % protocol.DEFAULT_CREDIT in DOC and protocol.DEFAULT_ADDRESS in DOC
