"""DHT records: signed by their publisher, checked by every node that stores or fetches them.
No I/O.

A record says, under a 256-bit ``key`` (for UCXL content, the address's content key):

- ``VALUE``: here is a small value (at most ``MAX_RECORD_VALUE`` bytes), or the SHA-256
  ``content_hash`` of larger content to fetch from a provider;
- ``PROVIDER``: the publisher holds the content for this key (ANNOUNCE), optionally of hash
  ``content_hash``; it carries no value.

Wire form (a msgpack array, ``encode_record``)::

    [kind: uint, key: bin 32, publisher_key: bin 32, version: uint, timestamp_ms: uint,
     address: str | nil, value: bin, content_hash: bin 32 | nil, signature: bin 64]

The publisher signs, with Ed25519, ``RECORD_SIGNATURE_DOMAIN`` + msgpack of every field but the
signature, preceded by the network ID (signed, never sent: a record from another network does
not verify; nor does one whose key or R is a point of small order or not canonical, which
OpenSSL's check alone would let anyone sign with). The publisher is SHA-256 of
``publisher_key``. When ``address`` is set it must be a canonical, concrete UCXL address whose
content key is ``key``, so nobody can file a value under an address it does not name. One
publisher holds at most one record of a kind under a key; only that publisher can replace it,
with a higher ``version`` (``supersedes``). ``timestamp_ms`` is the publisher's wall clock, for
people and temporal ordering; expiry never trusts it.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from typing import Any, Final

import msgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bzzz_edge import signatures, ucxl
from bzzz_edge.dht._config import ID_LEN, MAX_ADDRESS_LEN, MAX_RECORD_VALUE, MAX_VERSION
from bzzz_edge.errors import DecodeError, LocalProtocolError, SignatureError

__all__ = [
    "RECORD_SIGNATURE_DOMAIN",
    "Kind",
    "Record",
    "decode_record",
    "encode_record",
    "sign_record",
    "signed_bytes",
    "verify_record",
]

RECORD_SIGNATURE_DOMAIN: Final = b"bzzz-edge/1 dht record\x00"
_FIELDS = 9
_SIG_LEN = 64
_MAX_TIMESTAMP_MS = 2**63 - 1


class Kind(enum.IntEnum):
    VALUE = 1
    PROVIDER = 2


@dataclass(frozen=True, slots=True)
class Record:
    """A signed record (``verify_record`` before trusting any field). See the module docstring."""

    kind: Kind
    key: bytes
    publisher_key: bytes
    version: int
    timestamp_ms: int
    address: str | None
    value: bytes
    content_hash: bytes | None
    signature: bytes

    @property
    def publisher(self) -> bytes:
        """The publisher's node ID: SHA-256 of its public key."""
        return hashlib.sha256(self.publisher_key).digest()

    @property
    def slot(self) -> tuple[Kind, bytes, bytes]:
        """What one record occupies in a store: (kind, key, publisher key)."""
        return self.kind, self.key, self.publisher_key

    def supersedes(self, other: Record) -> bool:
        """Whether this record may replace ``other``: same slot, higher version."""
        return self.slot == other.slot and self.version > other.version


def _packb(items: list[Any]) -> bytes:
    packed = msgpack.packb(items, use_bin_type=True)
    assert isinstance(packed, bytes)
    return packed


def _signed_bytes(network_id: bytes, record: Record) -> bytes:
    fields = encode_record(record)[:-1]
    return RECORD_SIGNATURE_DOMAIN + _packb([network_id, *fields])


def encode_record(record: Record) -> list[Any]:
    """The msgpack-ready wire form of ``record``."""
    return [int(record.kind), record.key, record.publisher_key, record.version,
            record.timestamp_ms, record.address, record.value, record.content_hash,
            record.signature]


def _bytes(value: object, what: str, size: int | None = None, limit: int = 0) -> bytes:
    if type(value) is not bytes:
        raise DecodeError(f"record field '{what}': expected bin, got {type(value).__name__}")
    if size is not None and len(value) != size:
        raise DecodeError(f"record field '{what}': expected {size} bytes, got {len(value)}")
    if limit and len(value) > limit:
        raise DecodeError(f"record field '{what}': {len(value)} bytes, more than {limit}")
    return value


def _int(value: object, what: str, maximum: int) -> int:
    if type(value) is not int or not 0 <= value <= maximum:
        raise DecodeError(f"record field '{what}': expected an int in [0, {maximum}]")
    return value


def decode_record(items: object) -> Record:
    """Decode a record's wire form strictly (sizes, types, UCXL address); no cryptography.

    Raises:
        DecodeError: a malformed field, named in the message.
    """
    if type(items) is not list or len(items) != _FIELDS:
        raise DecodeError(f"record: expected an array of {_FIELDS} fields")
    kind_value = _int(items[0], "kind", 255)
    try:
        kind = Kind(kind_value)
    except ValueError:
        raise DecodeError(f"record field 'kind': unknown kind {kind_value}") from None
    address = items[5]
    if address is not None and (type(address) is not str or len(address) > MAX_ADDRESS_LEN):
        raise DecodeError(f"record field 'address': expected str of at most {MAX_ADDRESS_LEN}")
    content_hash = items[7]
    record = Record(
        kind=kind,
        key=_bytes(items[1], "key", ID_LEN),
        publisher_key=_bytes(items[2], "publisher_key", 32),
        version=_int(items[3], "version", MAX_VERSION),
        timestamp_ms=_int(items[4], "timestamp_ms", _MAX_TIMESTAMP_MS),
        address=address,
        value=_bytes(items[6], "value", limit=MAX_RECORD_VALUE),
        content_hash=None if content_hash is None else _bytes(content_hash, "content_hash", 32),
        signature=_bytes(items[8], "signature", _SIG_LEN),
    )
    _check_meaning(record)
    return record


def _check_meaning(record: Record) -> None:
    if record.kind is Kind.PROVIDER and record.value:
        raise DecodeError("record: a provider record carries no value")
    if record.value and record.content_hash is not None:
        raise DecodeError("record: a value record carries a value or a content hash, not both")
    if record.address is None:
        return
    try:
        parsed = ucxl.parse(record.address)
    except ucxl.UCXLError as exc:
        raise DecodeError(f"record field 'address': {exc}") from None
    if str(parsed) != record.address or parsed.has_wildcards:
        raise DecodeError("record field 'address': not a canonical, concrete UCXL address")
    if parsed.content_key != record.key:
        raise DecodeError("record field 'key': not the content key of the record's address")


def sign_record(
    private_key: Ed25519PrivateKey,
    *,
    network_id: bytes,
    kind: Kind,
    key: bytes,
    version: int,
    timestamp_ms: int,
    address: str | None = None,
    value: bytes = b"",
    content_hash: bytes | None = None,
) -> Record:
    """Create a record published and signed by the holder of ``private_key``.

    Raises:
        LocalProtocolError: a field no node would accept (too large, wrong key for the address).
    """
    public = private_key.public_key().public_bytes_raw()
    unsigned = Record(kind, key, public, version, timestamp_ms, address, value, content_hash,
                      bytes(_SIG_LEN))
    try:
        decode_record(encode_record(unsigned))
    except DecodeError as exc:
        raise LocalProtocolError(str(exc)) from None
    signature = private_key.sign(_signed_bytes(network_id, unsigned))
    return Record(kind, key, public, version, timestamp_ms, address, value, content_hash,
                  signature)


def signed_bytes(record: Record, network_id: bytes) -> bytes:
    """What the publisher of ``record`` signed (the domain, the network ID, every field but
    the signature): a function of the record, one to one."""
    return _signed_bytes(network_id, record)


def verify_record(record: Record, network_id: bytes, *, signed: bytes | None = None) -> None:
    """Check that ``record``'s publisher signed exactly these fields for this network
    (``signed``: ``signed_bytes(record, network_id)``, when the caller has it already).

    Raises:
        SignatureError: the signature does not verify, or the key is not an Ed25519 key (or
            a point of small order, as the signature's R may not be either).
    """
    if signed is None:
        signed = _signed_bytes(network_id, record)
    if not signatures.verify(record.publisher_key, record.signature, signed):
        raise SignatureError("record signature does not verify (or its key or R is a point "
                             "of small order: bzzz_edge.signatures)")
