"""`samroto keys`: any client key can be authorised as printed, whatever character it starts with."""

from __future__ import annotations

from pathlib import Path

import pytest
import zmq

from samroto.bridge import auth
from samroto.scripts.cli import main, protect_dash_keys


def _public_key_starting_with(prefix: str) -> str:
    for _ in range(20000):  # one Z85 key in 85 starts with a given character
        public = zmq.curve_keypair()[0].decode("ascii")
        if public.startswith(prefix):
            return public
    raise AssertionError("no key starting with %r in 20000 tries" % prefix)


@pytest.mark.parametrize("prefix", ["-", "a", "="])
@pytest.mark.parametrize("comment_first", [False, True])
def test_keys_add_takes_every_key_as_printed(config_dir: Path, prefix: str, comment_first: bool,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    key = _public_key_starting_with(prefix)
    argv = ["keys", "add", "--comment", "farm node 7", key] if comment_first else \
        ["keys", "add", key, "--comment", "farm node 7"]
    assert main(argv) == 0, capsys.readouterr().err
    assert auth.read_authorized_keys(auth.authorized_keys_path()) == [key.encode("ascii")]
    assert main(["keys", "list"]) == 0
    assert key in capsys.readouterr().out


def test_keys_add_refuses_a_malformed_key_with_a_message(config_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "add", "not-a-key"]) == 2
    err = capsys.readouterr().err
    assert "error" in err and "Traceback" not in err
    assert not auth.authorized_keys_path().exists() or auth.read_authorized_keys(auth.authorized_keys_path()) == []


def test_only_dash_keys_of_keys_add_are_moved() -> None:
    dash_key = "-" + "A" * 39
    assert protect_dash_keys(["keys", "add", dash_key, "--comment", "x"]) == ["keys", "add", "--comment", "x", "--", dash_key]
    assert protect_dash_keys(["keys", "add", "--", dash_key]) == ["keys", "add", "--", dash_key]
    assert protect_dash_keys(["matte", "--point", "-10,20"]) == ["matte", "--point", "-10,20"]
