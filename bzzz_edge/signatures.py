"""Ed25519 signature checks, the same answer whichever library checks them. No I/O.

Every signature a peer sends is checked here: gossip messages relayed from other origins, task
commands, signed log entries and heads, DHT records, the identity proof of a handshake.

Two backends, one behaviour:

- libsodium through PyNaCl (its ``crypto_sign_open``), where PyNaCl is installed
  (``pyproject.toml`` asks for it where PyPI has wheels): about half the time of OpenSSL's
  check here (55 against 100-150 us), the largest single cost of a DHT get or of a relayed
  message;
- OpenSSL through ``cryptography`` otherwise, and always under ``BZZZ_EDGE_PURE=1`` (the
  fallbacks' pass, so the test suite runs both).

Where the two differ, we refuse before either looks: a public key or a signature's R that is
not a canonical encoding (y at least p) or is a point of small order. OpenSSL accepts such
points, but a key like that has no secret behind it: with the identity as the key, R the
identity and S zero "sign" any message. libsodium refuses both, as we do. Both refuse an S
that is not below the group order.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ._native import FORCED_PURE

__all__ = ["BACKEND", "openssl_check", "sodium_check", "verify", "weak_point"]

KEY_LEN, SIGNATURE_LEN = 32, 64
# RFC 8032, 7.1, TEST 1 (the empty message).
_RFC8032_KEY = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
_RFC8032_SIGNATURE = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
    "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
_FIELD_P = 2**255 - 19
#: The y coordinates, as encoded, of Ed25519's eight points of small order (each stands for two,
#: x's sign aside; tests/test_signatures.py derives them).
_SMALL_ORDER_Y = frozenset(bytes.fromhex(y) for y in (
    "00" * 32,
    "01" + "00" * 31,
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "ec" + "ff" * 30 + "7f",
))
_Y_MASK = (1 << 255) - 1


def weak_point(encoded: bytes) -> bool:
    """Whether a 32-byte point encoding is not canonical or the point is of small order."""
    y = int.from_bytes(encoded, "little") & _Y_MASK
    return y >= _FIELD_P or y.to_bytes(32, "little") in _SMALL_ORDER_Y


@functools.lru_cache(maxsize=1024)
def _openssl_key(raw: bytes) -> Ed25519PublicKey:
    """A peer's key object (a few peers sign most messages: parsed once).

    Raises:
        ValueError: not an Ed25519 public key (not cached).
    """
    return Ed25519PublicKey.from_public_bytes(raw)


def sodium_check() -> Callable[[bytes, bytes, bytes], bool] | None:
    """libsodium's check (through PyNaCl), or None where PyNaCl is not installed."""
    # PyNaCl's compiled module itself, not ``nacl.bindings``: that package loads all of its 17
    # binding modules and reads every libsodium constant through cffi at import, 1.2 MB
    # resident on every node for the one function used here. The call is the one
    # ``nacl.bindings.crypto_sign_open`` makes.
    try:
        from nacl._sodium import ffi, lib
    except ImportError:
        return None
    # The once-per-process initialisation PyNaCl does (same tag, so done once between us):
    # libsodium picks its implementations for this CPU. -1: it could not initialise.
    if ffi.init_once(lib.sodium_init, "libsodium") == -1:
        return None
    sign_open, new = lib.crypto_sign_open, ffi.new

    def check(public_key: bytes, signature: bytes, message: bytes) -> bool:
        try:
            # libsodium reads 32 bytes behind the key's pointer whatever its length.
            if len(public_key) != KEY_LEN:
                return False
            signed = signature + message
            opened = new("unsigned char[]", len(signed))
            opened_len = new("unsigned long long *")
            return bool(sign_open(opened, opened_len, signed, len(signed), public_key) == 0)
        except TypeError:  # not bytes
            return False

    # A private module: proven on RFC 8032's first test vector (and a forgery of it) before
    # it is trusted; anything else and OpenSSL checks instead.
    try:
        good = check(_RFC8032_KEY, _RFC8032_SIGNATURE, b"")
        forged = check(_RFC8032_KEY, _RFC8032_SIGNATURE[:-1] + b"\x00", b"")
    except Exception:
        return None
    return check if good and not forged else None


def openssl_check(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """OpenSSL's check (through cryptography), weak points not refused: use ``verify``."""
    try:
        _openssl_key(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


_sodium = None if FORCED_PURE else sodium_check()
#: Which library checks signatures in this process: "libsodium" or "openssl".
BACKEND = "openssl" if _sodium is None else "libsodium"
_check = openssl_check if _sodium is None else _sodium


def verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` is ``public_key``'s Ed25519 signature of ``message`` (False for a
    key or signature of the wrong size, or a weak point: see the module docstring)."""
    if (len(public_key) != KEY_LEN or len(signature) != SIGNATURE_LEN
            or weak_point(public_key) or weak_point(signature[:32])):
        return False
    return _check(public_key, signature, message)
