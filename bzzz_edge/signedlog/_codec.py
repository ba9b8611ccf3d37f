"""Signed log records: canonical encoding, signing and checking of entries and heads. No I/O.

An entry is ``[body, signature]`` in msgpack, where ``body`` is the canonical msgpack of
``[1, index, timestamp_ms, author, type, data, prev]`` and the signature is the author's Ed25519
signature over ``ENTRY_DOMAIN + body``. Canonical: maps have string keys in sorted order and
only msgpack's plain types appear, so an entry has exactly one byte form; a decoder re-encodes
what it read and refuses anything else (two byte forms of one entry would make fork evidence
and hash chains ambiguous). An entry's hash, SHA-256 of ``0x00 + encoded entry``, is both its
Merkle leaf (RFC 6962) and what the next entry names as ``prev``.

A head (``SignedHead``) is ``[body, signature]`` with body ``[1, author, public_key, length,
root, timestamp_ms]``: the author vouches that its log has ``length`` entries whose Merkle tree
has root ``root``; it carries the public key, so whoever holds a head can check every entry.

Bounds: an entry's encoding is at most ``MAX_ENTRY_BYTES``; a type is 1-32 characters of
``[a-z0-9_.]``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .. import signatures
from ..errors import DecodeError, SignatureError
from ..ids import node_id_from_public_key

__all__ = [
    "ENTRY_DOMAIN",
    "HASH_LEN",
    "HEAD_DOMAIN",
    "MAX_ENTRY_BYTES",
    "ZERO_HASH",
    "Decoded",
    "Entry",
    "SignedHead",
    "canonical_pack",
    "check_signature",
    "decode_entry",
    "decode_head",
    "entry_hash",
    "entry_signature",
    "sign_entry",
    "sign_head",
]

ENTRY_DOMAIN = b"bzzz-edge log entry v1\x00"
HEAD_DOMAIN = b"bzzz-edge log head v1\x00"
HASH_LEN = 32
ZERO_HASH = bytes(HASH_LEN)
MAX_ENTRY_BYTES = 32 * 1024
_VERSION = 1
_TYPE = re.compile(r"[a-z0-9_.]{1,32}\Z")
_SIG_LEN = 64
_KEY_LEN = 32
_MAX_DEPTH = 64  # nesting of lists and maps in entry data (deeper ran out of Python's stack)


def canonical_pack(value: object) -> bytes:
    """msgpack with sorted string map keys and plain types only.

    Raises:
        DecodeError: a value that has no canonical form (a non-string key, a set, an object).
    """
    packed: bytes = msgpack.packb(_canonical(value, "data"), use_bin_type=True)
    return packed


def _canonical(value: object, where: str, depth: int = 0) -> object:
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    if depth >= _MAX_DEPTH:
        raise DecodeError(f"{where}: nested more than {_MAX_DEPTH} levels deep")
    if isinstance(value, (list, tuple)):
        return [_canonical(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise DecodeError(f"{where}: map keys must be strings")
        return {k: _canonical(value[k], f"{where}.{k}", depth + 1) for k in sorted(value)}
    raise DecodeError(f"{where}: {type(value).__name__} has no canonical encoding")


def entry_hash(encoded: bytes) -> bytes:
    """The hash of an encoded entry: its Merkle leaf, and the next entry's ``prev``."""
    return hashlib.sha256(b"\x00" + encoded).digest()


@dataclass(frozen=True, slots=True)
class Entry:
    """One checked (or freshly signed) log entry and its exact encoding."""

    index: int
    timestamp_ms: int
    author: bytes
    type: str
    data: dict[str, Any]
    prev: bytes
    signature: bytes
    encoded: bytes
    hash: bytes

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly view (bytes in hex)."""
        return {"index": self.index, "timestamp_ms": self.timestamp_ms,
                "author": self.author.hex(), "type": self.type, "data": _jsonable(self.data),
                "prev": self.prev.hex(), "hash": self.hash.hex(),
                "signature": self.signature.hex()}


#: An entry decoded and its signature checked, or the error that met it (``_parallel``).
Decoded = Entry | DecodeError | SignatureError


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def sign_entry(key: Ed25519PrivateKey, *, author: bytes, index: int, timestamp_ms: int,
               type: str, data: Mapping[str, Any], prev: bytes) -> Entry:
    """Encode and sign a new entry.

    Raises:
        DecodeError: a bad type name, data with no canonical form, or an entry too large.
    """
    if not _TYPE.match(type):
        raise DecodeError(f"log entry type {type!r}: expected 1-32 of [a-z0-9_.]")
    body = canonical_pack([_VERSION, index, timestamp_ms, author, type, dict(data), prev])
    signature = key.sign(ENTRY_DOMAIN + body)
    encoded = msgpack.packb([body, signature], use_bin_type=True)
    if len(encoded) > MAX_ENTRY_BYTES:
        raise DecodeError(f"log entry of {len(encoded)} bytes is over {MAX_ENTRY_BYTES}")
    return Entry(index, timestamp_ms, author, type, msgpack.unpackb(body)[5], prev, signature,
                 encoded, entry_hash(encoded))


def _split(encoded: bytes, what: str) -> tuple[bytes, bytes]:
    if len(encoded) > MAX_ENTRY_BYTES:
        raise DecodeError(f"{what} of {len(encoded)} bytes is over {MAX_ENTRY_BYTES}")
    try:
        outer = msgpack.unpackb(encoded, raw=False)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise DecodeError(f"{what} is not msgpack: {exc}") from None
    if (not isinstance(outer, list) or len(outer) != 2 or not isinstance(outer[0], bytes)
            or not isinstance(outer[1], bytes) or len(outer[1]) != _SIG_LEN):
        raise DecodeError(f"{what} is not [body, 64-byte signature]")
    if msgpack.packb(outer, use_bin_type=True) != encoded:
        raise DecodeError(f"{what} is not in canonical form")
    return outer[0], outer[1]


def _unpack_body(body: bytes, what: str) -> list[Any]:
    try:
        fields = msgpack.unpackb(body, raw=False, strict_map_key=True)
    except Exception as exc:
        raise DecodeError(f"{what} body is not msgpack: {exc}") from None
    if not isinstance(fields, list) or not fields or fields[0] != _VERSION:
        raise DecodeError(f"{what} body has an unknown layout or version")
    if _sorted_plain(fields, 0) and msgpack.packb(fields, use_bin_type=True) == body:
        return fields  # canonical: what canonical_pack below would say, in a fifth of the time
    try:
        canonical = canonical_pack(fields)
    except DecodeError as exc:
        raise DecodeError(f"{what}: {exc}") from None
    if canonical != body:
        raise DecodeError(f"{what} body is not in canonical form")
    return fields


def _sorted_plain(value: object, depth: int) -> bool:
    """Whether ``_canonical`` would take ``value`` and give it back unchanged: plain types only,
    string map keys already in sorted order, nested at most ``_MAX_DEPTH`` deep. Then packing
    ``value`` as it is gives its canonical form (``_unpack_body``); when not, ``canonical_pack``
    finds the reason."""
    if isinstance(value, list):
        if depth >= _MAX_DEPTH:
            return False
        return all(_sorted_plain(item, depth + 1) for item in value)
    if isinstance(value, dict):
        if depth >= _MAX_DEPTH:
            return False
        keys = list(value)
        if not all(isinstance(k, str) for k in keys) or keys != sorted(keys):
            return False
        return all(_sorted_plain(item, depth + 1) for item in value.values())
    return value is None or isinstance(value, (bool, int, float, str, bytes))


def decode_entry(encoded: bytes, public_key: bytes | Ed25519PublicKey | None) -> Entry:
    """Decode an entry and check its form and signature (not its place in a log).

    ``public_key`` None skips the signature (the caller checks it elsewhere: ``check_signature``).

    Raises:
        DecodeError: not a well-formed, canonical entry.
        SignatureError: the signature is not ``public_key``'s over this body.
    """
    body, signature = _split(encoded, "log entry")
    if public_key is not None:
        check_signature(public_key, body, signature)
    fields = _unpack_body(body, "log entry")
    if len(fields) != 7:
        raise DecodeError("log entry body has the wrong number of fields")
    _, index, timestamp_ms, author, type_, data, prev = fields
    if not (isinstance(index, int) and not isinstance(index, bool) and index >= 0):
        raise DecodeError(f"log entry index {index!r} is not a non-negative integer")
    if not (isinstance(timestamp_ms, int) and not isinstance(timestamp_ms, bool)):
        raise DecodeError("log entry timestamp is not an integer")
    if not (isinstance(author, bytes) and len(author) == HASH_LEN):
        raise DecodeError("log entry author is not a 32-byte node ID")
    if not (isinstance(type_, str) and _TYPE.match(type_)):
        raise DecodeError(f"log entry type {type_!r} is not a valid type name")
    if not isinstance(data, dict):
        raise DecodeError("log entry data is not a map")
    if not (isinstance(prev, bytes) and len(prev) == HASH_LEN):
        raise DecodeError("log entry prev is not a 32-byte hash")
    return Entry(index, timestamp_ms, author, type_, data, prev, signature, encoded,
                 entry_hash(encoded))


def entry_signature(encoded: bytes) -> tuple[bytes, bytes]:
    """``(body, signature)`` of an encoded entry, for checking the signature elsewhere.

    Raises:
        DecodeError: not ``[body, 64-byte signature]``.
    """
    return _split(encoded, "log entry")


def check_signature(public_key: bytes | Ed25519PublicKey, body: bytes, signature: bytes) -> None:
    """Raises SignatureError unless ``signature`` is the key's (raw, or a key object) over an
    entry ``body`` (checked by ``bzzz_edge.signatures``)."""
    raw = public_key if isinstance(public_key, bytes) else public_key.public_bytes_raw()
    if not signatures.verify(raw, signature, ENTRY_DOMAIN + body):
        raise SignatureError("log entry signature does not verify")


@dataclass(frozen=True, slots=True)
class SignedHead:
    """The author's statement: my log has ``length`` entries and this Merkle root."""

    author: bytes
    public_key: bytes
    length: int
    root: bytes
    timestamp_ms: int
    signature: bytes
    encoded: bytes

    def key(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(self.public_key)

    def as_dict(self) -> dict[str, Any]:
        return {"author": self.author.hex(), "public_key": self.public_key.hex(),
                "length": self.length, "root": self.root.hex(),
                "timestamp_ms": self.timestamp_ms, "signature": self.signature.hex()}


def sign_head(key: Ed25519PrivateKey, *, author: bytes, length: int, root: bytes,
              timestamp_ms: int) -> SignedHead:
    public = key.public_key().public_bytes_raw()
    body = canonical_pack([_VERSION, author, public, length, root, timestamp_ms])
    signature = key.sign(HEAD_DOMAIN + body)
    return SignedHead(author, public, length, root, timestamp_ms, signature,
                      msgpack.packb([body, signature], use_bin_type=True))


def decode_head(encoded: bytes) -> SignedHead:
    """Decode a head, check that its key is its author's and that it signed it.

    Raises:
        DecodeError: not a well-formed head, or a key that is not the author's.
        SignatureError: the signature does not verify.
    """
    body, signature = _split(encoded, "log head")
    fields = _unpack_body(body, "log head")
    if len(fields) != 6:
        raise DecodeError("log head body has the wrong number of fields")
    _, author, public, length, root, timestamp_ms = fields
    if not (isinstance(public, bytes) and len(public) == _KEY_LEN):
        raise DecodeError("log head public key is not 32 bytes")
    if not (isinstance(author, bytes) and author == node_id_from_public_key(public)):
        raise DecodeError("log head author is not the node ID of its public key")
    if not (isinstance(length, int) and not isinstance(length, bool) and length >= 0):
        raise DecodeError("log head length is not a non-negative integer")
    if not (isinstance(root, bytes) and len(root) == HASH_LEN):
        raise DecodeError("log head root is not a 32-byte hash")
    if not (isinstance(timestamp_ms, int) and not isinstance(timestamp_ms, bool)):
        raise DecodeError("log head timestamp is not an integer")
    if not signatures.verify(public, signature, HEAD_DOMAIN + body):
        raise SignatureError("log head signature does not verify")
    return SignedHead(author, public, length, root, timestamp_ms, signature, encoded)
