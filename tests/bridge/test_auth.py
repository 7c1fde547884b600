"""Token file, config folder and CURVE keys."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
import zmq

from samroto.bridge import auth


def test_config_dir_follows_the_platform(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SAMROTO_CONFIG_DIR", str(tmp_path / "override"))
    assert auth.config_dir() == tmp_path / "override"
    monkeypatch.delenv("SAMROTO_CONFIG_DIR")
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert auth.config_dir() == tmp_path / "xdg" / "samroto"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert auth.config_dir() == tmp_path / "home" / ".config" / "samroto"
    monkeypatch.setattr(sys, "platform", "darwin")
    assert auth.config_dir() == tmp_path / "home" / "Library" / "Application Support" / "samroto"
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("APPDATA", str(tmp_path / "appdata"))
    assert auth.config_dir() == tmp_path / "appdata" / "samroto"


def test_token_is_created_private_once_and_then_reused(config_dir: Path) -> None:
    path = auth.token_path()
    assert path == config_dir / "token" and not path.exists()
    token = auth.load_or_create_token()
    assert len(token) == 64 and int(token, 16) >= 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert auth.load_or_create_token() == token
    assert auth.read_token() == token


def test_missing_token_says_how_to_get_one(config_dir: Path) -> None:
    with pytest.raises(auth.AuthError, match="start the worker once"):
        auth.read_token()


def test_a_token_others_can_read_is_refused(config_dir: Path) -> None:
    auth.load_or_create_token()
    os.chmod(auth.token_path(), 0o644)
    with pytest.raises(auth.AuthError, match="chmod 600"):
        auth.read_token()


def test_a_short_token_is_refused(config_dir: Path) -> None:
    config_dir.mkdir(parents=True)
    path = auth.token_path()
    path.write_text("short")
    os.chmod(path, 0o600)
    with pytest.raises(auth.AuthError, match="too short"):
        auth.read_token()


@pytest.mark.parametrize("address, local", [
    ("tcp://127.0.0.1:5795", True), ("tcp://127.3.2.1:1", True), ("tcp://localhost:5795", True),
    ("tcp://[::1]:5795", True), ("ipc:///tmp/samroto.sock", True), ("inproc://x", True),
    ("tcp://0.0.0.0:5795", False), ("tcp://*:5795", False), ("tcp://192.168.1.4:5795", False),
    ("tcp://render01:5795", False), ("tcp://eth0:5795", False), ("udp://127.0.0.1:1", False),
])
def test_only_loopback_addresses_count_as_local(address: str, local: bool) -> None:
    assert auth.is_local_address(address) is local


def test_curve_keys_are_created_once_with_a_private_secret(config_dir: Path) -> None:
    public, secret = auth.load_or_create_server_keys()
    assert zmq.curve_public(secret) == public
    secret_file = auth.curve_dir() / auth.CURVE_SECRET_FILE
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert auth.read_server_public_key() == public
    assert auth.load_or_create_server_keys() == (public, secret)
    assert secret.decode() not in (auth.curve_dir() / auth.CURVE_PUBLIC_FILE).read_text()


def test_authorised_keys_are_added_once_privately_and_read_back(config_dir: Path) -> None:
    public, _ = auth.load_or_create_client_keys()
    assert auth.load_or_create_client_keys() == (public, _)  # created once, then reused
    path, added = auth.add_authorized_key(public, "artist's workstation")
    assert added and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert auth.add_authorized_key(public)[1] is False
    hashed = b"#" + public[1:]  # Z85 keys may start with '#': not a comment
    auth.add_authorized_key(hashed)
    assert auth.read_authorized_keys(path) == [public, hashed]
    assert auth.parse_public_key((auth.curve_dir() / auth.CLIENT_PUBLIC_FILE).read_text()) == public
    path.write_text(path.read_text() + "not a key\n")
    with pytest.raises(auth.AuthError, match="line 4 is not a CURVE public key"):
        auth.read_authorized_keys(path)
