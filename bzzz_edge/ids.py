"""Node IDs: derivation from a public key, the human-friendly form, and the short form in logs.
No I/O.

No I/O. A node ID is the SHA-256 of the node's raw 32-byte Ed25519 public key; people see it as
a Syncthing-style device ID (base32 with Luhn check characters, ``MFZWI3D-BONSGYC-...``), and
logs show the first two groups of that (``short_id``), which is enough to tell peers apart.
"""

from __future__ import annotations

import base64
import functools
import hashlib

from .errors import IdentityError

__all__ = ["NODE_ID_LEN", "format_node_id", "node_id_from_public_key", "parse_node_id",
           "short_id"]

NODE_ID_LEN = 32
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_TYPO_FIXES = str.maketrans({"0": "O", "1": "I", "8": "B"})
_SHORT_LEN = 15  # "ABCDEFG-HIJKLMN": two groups


def node_id_from_public_key(public_key: bytes) -> bytes:
    """The node ID of a raw 32-byte Ed25519 public key: its SHA-256."""
    return hashlib.sha256(public_key).digest()


def _luhn32(chunk: str) -> str:
    factor, total = 1, 0
    for char in chunk:
        addend = factor * _ALPHABET.index(char)
        factor = 1 if factor == 2 else 2
        total += addend // 32 + addend % 32
    return _ALPHABET[(32 - total % 32) % 32]


@functools.lru_cache(maxsize=1024)  # the same few peers, formatted for every API answer
def format_node_id(node_id: bytes) -> str:
    """The human-friendly form of a 32-byte node ID, e.g. ``MFZWI3D-BONSGYC-...``."""
    if len(node_id) != NODE_ID_LEN:
        raise ValueError(f"a node ID is 32 bytes, got {len(node_id)}")
    plain = base64.b32encode(node_id).decode().rstrip("=")  # 52 characters
    checked = "".join(c + _luhn32(c) for c in (plain[i:i + 13] for i in range(0, 52, 13)))
    return "-".join(checked[i:i + 7] for i in range(0, 56, 7))


@functools.lru_cache(maxsize=1024)  # logs name the same few peers again and again
def short_id(node_id: bytes) -> str:
    """The form logs use: the first two groups of the human-friendly ID."""
    if len(node_id) != NODE_ID_LEN:
        return node_id.hex()[:_SHORT_LEN]
    return format_node_id(node_id)[:_SHORT_LEN]


def parse_node_id(text: str) -> bytes:
    """Parse the human-friendly form back to 32 bytes, checking every check character.

    Raises:
        IdentityError: wrong length, a character outside base32, or a failed check.
    """
    cleaned = text.strip().upper().replace("-", "").replace(" ", "").translate(_TYPO_FIXES)
    if len(cleaned) != 56:
        raise IdentityError(f"a node ID has 56 characters (without dashes), got {len(cleaned)}")
    bad = next((c for c in cleaned if c not in _ALPHABET), None)
    if bad is not None:
        raise IdentityError(f"{bad!r} is not a base32 character (A-Z, 2-7)")
    plain = []
    for group in range(4):
        chunk, check = cleaned[group * 14:group * 14 + 13], cleaned[group * 14 + 13]
        if _luhn32(chunk) != check:
            raise IdentityError(f"node ID check character {group + 1} of 4 is wrong: a typo?")
        plain.append(chunk)
    return base64.b32decode("".join(plain) + "====")
