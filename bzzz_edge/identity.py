"""Node identity: the Ed25519 key pair, the node ID, the network key, and their files. Does I/O.

The node ID is the SHA-256 of the raw Ed25519 public key. People see it the way Syncthing shows
device IDs: base32, a Luhn mod-32 check character after every 13 characters, in dash-separated
groups of 7, so a mistyped ID is caught rather than silently naming another node.

Key files are created 0600; a key file that group or others can read, or that another user owns,
is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import ids
from .errors import IdentityError
from .ids import format_node_id, parse_node_id

__all__ = [
    "NETWORK_KEY_SIZE",
    "Identity",
    "check_private_file",
    "format_node_id",
    "generate_network_key",
    "load_network_key",
    "network_fingerprint",
    "network_id",
    "node_id_from_public_key",
    "parse_node_id",
    "write_network_key",
    "write_private_file",
]

NETWORK_KEY_SIZE = 32
def node_id_from_public_key(public_key: Ed25519PublicKey | bytes) -> bytes:
    """SHA-256 of the raw 32-byte Ed25519 public key (see ``ids``)."""
    if isinstance(public_key, Ed25519PublicKey):
        public_key = public_key.public_bytes_raw()
    return ids.node_id_from_public_key(public_key)


def network_id(network_key: bytes) -> bytes:
    """The network's ID, signed into every gossip message (derived from the key, not secret)."""
    return hashlib.blake2b(network_key, digest_size=16, person=b"bzzz-network-id").digest()


def network_fingerprint(network_key: bytes) -> str:
    """A short public fingerprint of the network key (safe to announce, never the key)."""
    return hashlib.blake2b(network_key, digest_size=8, person=b"bzzz-netfp").hexdigest()


def check_private_file(path: Path, what: str) -> None:
    """Refuse a secret file that group or others may read or write, or that another user owns.

    Raises:
        IdentityError: the file is missing, unreadable, not ours, or its mode is too open.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        raise IdentityError(f"{what} {path} does not exist; run `bzzz-edge init` first") from None
    except OSError as exc:
        raise IdentityError(f"cannot read {what} {path}: {exc.strerror}") from None
    mode = st.st_mode
    if not stat.S_ISREG(mode):
        raise IdentityError(f"{what} {path} is not a regular file")
    if st.st_uid != os.geteuid():
        # Whoever owns the file can swap the key under us (OpenSSH's StrictModes rule).
        raise IdentityError(
            f"{what} {path} is owned by uid {st.st_uid}, not by this user (uid {os.geteuid()}); "
            f"run `chown {os.geteuid()} {path}`"
        )
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise IdentityError(
            f"{what} {path} is accessible by others (mode {stat.S_IMODE(mode):04o}); "
            f"run `chmod 600 {path}`"
        )


def write_private_file(path: Path, data: bytes) -> None:
    """Write a secret atomically, created 0600 from the start (never briefly readable)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise IdentityError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)  # replaces a symlink at ``path`` itself, never its target
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise IdentityError(f"cannot write {path}: {exc.strerror}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def generate_network_key() -> bytes:
    return secrets.token_bytes(NETWORK_KEY_SIZE)


def write_network_key(path: Path, key: bytes) -> None:
    write_private_file(path, key.hex().encode() + b"\n")


def load_network_key(path: Path, *, check_mode: bool = True) -> bytes:
    """Read a network key file (64 hex characters).

    Raises:
        IdentityError: missing, unsafe mode, or not a 32-byte hex key.
    """
    if check_mode:
        check_private_file(path, "network key file")
    try:
        text = path.read_text(encoding="ascii").strip()
        key = bytes.fromhex(text)
    except FileNotFoundError:
        raise IdentityError(f"network key file {path} does not exist") from None
    except OSError as exc:
        raise IdentityError(f"cannot read network key file {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, ValueError):
        raise IdentityError(f"network key file {path} does not hold a hex key") from None
    if len(key) != NETWORK_KEY_SIZE:
        raise IdentityError(
            f"network key file {path} holds {len(key)} bytes; expected {NETWORK_KEY_SIZE}"
        )
    return key


#: The DER of an Ed25519 private key in PKCS#8 (RFC 8410) up to its 32-byte seed, as `save`
#: (that is, OpenSSL) writes it: SEQUENCE, version 0, the Ed25519 algorithm, the seed.
_PKCS8_ED25519_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
_PEM_BEGIN, _PEM_END = b"-----BEGIN PRIVATE KEY-----", b"-----END PRIVATE KEY-----"


def _ed25519_pkcs8_pem(pem: bytes) -> Ed25519PrivateKey | None:
    """The key of an identity file exactly as ``Identity.save`` writes it, or None for any other
    content (which cryptography's PEM parser then accepts or refuses).

    Why not that parser every time: importing ``cryptography...serialization`` loads its SSH
    key code and every asymmetric algorithm (about 30 modules, 1 MB resident on every node)
    for the one key each node reads once at start.
    """
    lines = [line.strip() for line in pem.strip().splitlines()]
    if len(lines) < 3 or lines[0] != _PEM_BEGIN or lines[-1] != _PEM_END:
        return None
    try:
        der = base64.b64decode(b"".join(lines[1:-1]), validate=True)
    except binascii.Error:
        return None
    if len(der) != len(_PKCS8_ED25519_PREFIX) + 32 or not der.startswith(_PKCS8_ED25519_PREFIX):
        return None
    return Ed25519PrivateKey.from_private_bytes(der[len(_PKCS8_ED25519_PREFIX):])


@dataclass(frozen=True, slots=True)
class Identity:
    """A node's Ed25519 key pair and the node ID derived from it."""

    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> Identity:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, path: Path) -> Identity:
        """Load a PEM (PKCS#8) Ed25519 key, refusing a file others can read.

        Raises:
            IdentityError: missing file, unsafe mode, or not an Ed25519 private key.
        """
        check_private_file(path, "identity key file")
        try:
            pem = path.read_bytes()
            key: object = _ed25519_pkcs8_pem(pem)
            if key is None:  # not in the form `save` writes: cryptography's parser decides
                from cryptography.hazmat.primitives import serialization

                key = serialization.load_pem_private_key(pem, password=None)
        except OSError as exc:
            raise IdentityError(f"cannot read identity key file {path}: {exc.strerror}") from None
        except ValueError:
            raise IdentityError(f"identity key file {path} is not a PEM private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise IdentityError(f"identity key file {path} does not hold an Ed25519 key")
        return cls(key)

    def save(self, path: Path) -> None:
        # Here, not at the top: see _ed25519_pkcs8_pem (a node only saves on `init`).
        from cryptography.hazmat.primitives import serialization

        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_private_file(path, pem)

    @property
    def public_key_bytes(self) -> bytes:
        return self.private_key.public_key().public_bytes_raw()

    @property
    def node_id(self) -> bytes:
        return node_id_from_public_key(self.public_key_bytes)

    @property
    def display_id(self) -> str:
        return format_node_id(self.node_id)

    def __repr__(self) -> str:  # never show key material
        return f"Identity({self.display_id})"
