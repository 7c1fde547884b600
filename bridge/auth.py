"""Where the worker token and CURVE keys live, and how they are created and read.

The token is a random secret in a 0600 file in the user's config folder: the worker creates
it on first start, clients read the same file (or are given the token). CURVE keys are only
needed when the worker binds a non-loopback address. Standard library only (zmq is imported
lazily for CURVE), so the client can use this module inside Blender and Nuke.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
import stat
import sys
from pathlib import Path
from typing import Any, List, Optional, Tuple

TOKEN_FILE = "token"
WORKER_FILE = "worker.json"
CURVE_DIR = "curve"
CURVE_PUBLIC_FILE = "server.key"
CURVE_SECRET_FILE = "server.key_secret"
CLIENT_PUBLIC_FILE = "client.key"
CLIENT_SECRET_FILE = "client.key_secret"
AUTHORIZED_KEYS_FILE = "authorized_keys"
# ZeroMQ PLAIN user name on loopback binds; the password is derived from the token (see plain_password)
PLAIN_USERNAME = "samroto"


class AuthError(Exception):
    """The token or keys are missing, unreadable or unsafe."""


def config_dir() -> Path:
    """The user's samroto config folder.

    `$SAMROTO_CONFIG_DIR`, else `%APPDATA%\\samroto` on Windows, `~/Library/Application Support/samroto`
    on macOS, `$XDG_CONFIG_HOME/samroto` or `~/.config/samroto` elsewhere.
    """
    override = os.environ.get("SAMROTO_CONFIG_DIR")
    if override:
        return Path(override).expanduser()
    if sys.platform.startswith("win"):
        base = os.environ.get("APPDATA")
        return (Path(base) if base else Path.home() / "AppData" / "Roaming") / "samroto"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "samroto"
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return (Path(xdg) if xdg else Path.home() / ".config") / "samroto"


def token_path(directory: Optional[Path] = None) -> Path:
    return (directory or config_dir()) / TOKEN_FILE


def _check_private(path: Path) -> None:
    """Refuse a secret file that others can read (POSIX only; Windows ACLs are per-user already)."""
    if os.name != "posix":
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise AuthError("%s is readable by other users (mode %o); run: chmod 600 %s" % (path, mode, path))


def _write_private(path: Path, text: str) -> None:
    """Create `path` with mode 0600 from the start (no window where it is world-readable)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def read_token(path: Optional[Path] = None) -> str:
    """The worker token from its file; AuthError saying how to fix it if missing or unsafe."""
    path = Path(path) if path is not None else token_path()
    if not path.is_file():
        raise AuthError("no worker token at %s: start the worker once (`samroto worker`) to create it, "
                        "or pass token= to the client" % path)
    _check_private(path)
    token = path.read_text(encoding="utf-8").strip()
    if len(token) < 32:
        raise AuthError("the worker token in %s is too short (%d characters); delete the file and restart "
                        "the worker to make a new one" % (path, len(token)))
    return token


def load_or_create_token(path: Optional[Path] = None) -> str:
    """The worker side: read the token, creating a new random one (0600) on first start."""
    path = Path(path) if path is not None else token_path()
    if not path.exists():
        try:
            _write_private(path, secrets.token_hex(32) + "\n")
        except FileExistsError:  # another worker created it at the same moment
            pass
    return read_token(path)


def is_local_address(address: str) -> bool:
    """True for loopback TCP, `ipc://` and `inproc://` endpoints (no CURVE needed)."""
    scheme, _, rest = address.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp":
        return False
    host = rest.rsplit(":", 1)[0] if ":" in rest else rest
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a hostname, an interface name or `*`: reachable from outside


def curve_dir(directory: Optional[Path] = None) -> Path:
    return (directory or config_dir()) / CURVE_DIR


def _read_z85_key(path: Path, field: str) -> bytes:
    """A Z85 key from a certificate-style line `field = "..."`."""
    for line in path.read_text(encoding="utf-8").splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and name.strip() == field:
            key = value.strip().strip('"')
            if len(key) == 40:
                return key.encode("ascii")
    raise AuthError("no %s found in %s" % (field, path))


def load_or_create_server_keys(directory: Optional[Path] = None) -> Tuple[bytes, bytes]:
    """The worker's CURVE (public, secret) keys, created on first use.

    Clients need the public key file (`<config>/curve/server.key`): copy it to the
    client machine's config folder together with the token, or pass `curve_server_key=`.
    """
    import zmq  # lazily: only CURVE users need it here

    if not zmq.has("curve"):
        raise AuthError("this libzmq was built without CURVE; it cannot bind a non-loopback address securely")
    folder = curve_dir(directory)
    public_path, secret_path = folder / CURVE_PUBLIC_FILE, folder / CURVE_SECRET_FILE
    if not secret_path.exists():
        public, secret = zmq.curve_keypair()
        _write_private(secret_path, 'public-key = "%s"\nsecret-key = "%s"\n' % (public.decode(), secret.decode()))
        tmp = public_path.with_suffix(".tmp")
        tmp.write_text('public-key = "%s"\n' % public.decode(), encoding="utf-8")
        os.replace(tmp, public_path)
    _check_private(secret_path)
    return _read_z85_key(secret_path, "public-key"), _read_z85_key(secret_path, "secret-key")


def read_server_public_key(directory: Optional[Path] = None) -> Optional[bytes]:
    """The worker's CURVE public key if its file exists in the config folder, else None."""
    path = curve_dir(directory) / CURVE_PUBLIC_FILE
    return _read_z85_key(path, "public-key") if path.is_file() else None


# --- connection-level authentication (ZAP) -----------------------------------------------------


def plain_password(token: str) -> str:
    """The PLAIN password a client gives on a loopback bind: derived from the token, so the token
    itself never travels, and a peer without the token is refused at the handshake, before the
    worker holds any of its messages."""
    return hmac.new(token.encode("utf-8"), b"samroto zap plain v1", hashlib.sha256).hexdigest()


def _key_file_text(public: bytes, secret: Optional[bytes] = None) -> str:
    text = 'public-key = "%s"\n' % public.decode("ascii")
    return text + ('secret-key = "%s"\n' % secret.decode("ascii") if secret is not None else "")


def load_or_create_client_keys(directory: Optional[Path] = None) -> Tuple[bytes, bytes]:
    """This machine's CURVE client (public, secret) keys, created on first use.

    A worker on a network address only accepts clients whose public key is in its
    authorised-keys file: print it with `samroto keys show` and add it on the worker's machine
    with `samroto keys add KEY`."""
    import zmq

    folder = curve_dir(directory)
    public_path, secret_path = folder / CLIENT_PUBLIC_FILE, folder / CLIENT_SECRET_FILE
    if not secret_path.exists():
        public, secret = zmq.curve_keypair()
        try:
            _write_private(secret_path, _key_file_text(public, secret))
        except FileExistsError:
            pass
        else:
            tmp = public_path.with_suffix(".tmp")
            tmp.write_text(_key_file_text(public), encoding="utf-8")
            os.replace(tmp, public_path)
    _check_private(secret_path)
    return _read_z85_key(secret_path, "public-key"), _read_z85_key(secret_path, "secret-key")


def authorized_keys_path(directory: Optional[Path] = None) -> Path:
    return curve_dir(directory) / AUTHORIZED_KEYS_FILE


def parse_public_key(text: str) -> bytes:
    """A Z85 public key (40 characters) given as the key itself or a `public-key = "..."` line or file text."""
    for line in text.splitlines() or [text]:
        line = line.strip()
        name, sep, value = line.partition("=")
        candidate = value.strip().strip('"') if sep and name.strip() == "public-key" else (line.split() or [""])[0]
        if _is_z85_key(candidate):
            return candidate.encode("ascii")
    raise AuthError("no CURVE public key (40 Z85 characters) found in %r" % (text[:80],))


_Z85 = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#")


def _is_z85_key(text: str) -> bool:
    return len(text) == 40 and all(c in _Z85 for c in text)


def read_authorized_keys(path: Path) -> List[bytes]:
    """The Z85 client keys in an authorised-keys file: one per line, `KEY [comment]`; other lines
    starting with `#` are comments (a key itself may start with `#`: Z85 uses it)."""
    keys = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        words = line.split()
        if not words:
            continue
        if _is_z85_key(words[0]):
            keys.append(words[0].encode("ascii"))
        elif not words[0].startswith("#"):
            raise AuthError("%s line %d is not a CURVE public key (40 Z85 characters)" % (path, number))
    return keys


def add_authorized_key(key: bytes, comment: str = "", directory: Optional[Path] = None) -> Tuple[Path, bool]:
    """Append a client key to the worker's authorised keys (created 0600); (path, added) where
    added is False when the key was there already. A running worker picks it up at once."""
    path = authorized_keys_path(directory)
    if path.exists():
        _check_private(path)
        if key in read_authorized_keys(path):
            return path, False
    else:
        try:
            _write_private(path, "# samroto: CURVE public keys of the clients this worker accepts\n")
        except FileExistsError:
            pass
    line = key.decode("ascii") + (" " + " ".join(comment.split()) if comment.strip() else "") + "\n"
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line)
    return path, True


def configure_client_socket(sock: Any, token: str, *, curve_server_key: Optional[bytes] = None,
                            config_dir: Optional[Path] = None) -> None:
    """Set a client socket's handshake credentials: CURVE with this machine's client key for a
    network worker, else PLAIN with the password derived from the token (loopback)."""
    import zmq

    if curve_server_key is not None:
        public, secret = load_or_create_client_keys(config_dir)
        sock.setsockopt(zmq.CURVE_SERVERKEY, curve_server_key)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
    else:
        sock.setsockopt(zmq.PLAIN_USERNAME, PLAIN_USERNAME.encode("ascii"))
        sock.setsockopt(zmq.PLAIN_PASSWORD, plain_password(token).encode("ascii"))
