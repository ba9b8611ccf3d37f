"""Ed25519 checks (bzzz_edge.signatures): the list of points of small order, derived here; weak
keys and R values refused whatever the backend; libsodium and OpenSSL give the same answers."""

from __future__ import annotations

import os
import random

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from bzzz_edge import signatures
from bzzz_edge._native import FORCED_PURE

_P = 2**255 - 19
_D = -121665 * pow(121666, -1, _P) % _P
_ORDER = 2**252 + 27742317777372353535851937790883648493  # of the base point


def _add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    (x1, y1), (x2, y2) = a, b
    t = _D * x1 * x2 * y1 * y2 % _P
    return ((x1 * y2 + y1 * x2) * pow(1 + t, -1, _P) % _P,
            (y1 * y2 + x1 * x2) * pow(1 - t, -1, _P) % _P)


def _times(k: int, point: tuple[int, int]) -> tuple[int, int]:
    out = (0, 1)
    while k:
        if k & 1:
            out = _add(out, point)
        point, k = _add(point, point), k >> 1
    return out


def _on_curve(y: int) -> tuple[int, int] | None:
    u = (y * y - 1) * pow(_D * y * y + 1, -1, _P) % _P
    x = pow(u, (_P + 3) // 8, _P)
    if x * x % _P != u:
        x = x * pow(2, (_P - 1) // 4, _P) % _P
    return (x, y) if x * x % _P == u else None


def test_the_small_order_list_holds_every_point_of_small_order() -> None:
    rng, torsion = random.Random(1), set()
    while len(torsion) < 8:  # [order] of a random point lies in the 8 points of small order
        point = _on_curve(rng.randrange(_P))
        if point is not None:
            small = step = _times(_ORDER, point)
            for _ in range(8):
                torsion.add(small)
                small = _add(small, step)
    assert {y.to_bytes(32, "little") for _, y in torsion} == signatures._SMALL_ORDER_Y


IDENTITY = b"\x01" + bytes(31)
FORGED = IDENTITY + bytes(32)  # R the identity, S zero: "signs" anything under the identity


@pytest.mark.parametrize("key", [IDENTITY, bytes.fromhex("ee" + "ff" * 30 + "7f"),
                                 bytes.fromhex("ec" + "ff" * 30 + "ff")],
                         ids=["identity", "identity-not-canonical", "order-2"])
def test_a_key_of_small_order_is_refused_which_openssl_alone_accepts(key: bytes) -> None:
    assert not signatures.verify(key, FORGED, b"any message")
    if key == IDENTITY:
        assert signatures.openssl_check(key, FORGED, b"any message")  # why the gate exists


def test_a_good_signature_verifies_and_any_change_fails() -> None:
    key = Ed25519PrivateKey.generate()
    public, message = key.public_key().public_bytes_raw(), b"a task command"
    signature = key.sign(message)
    assert signatures.verify(public, signature, message)
    assert not signatures.verify(public, signature, message + b"!")
    assert not signatures.verify(public, signature[:-1] + bytes([signature[-1] ^ 1]), message)
    assert not signatures.verify(public[:31], signature, message)  # wrong sizes: refused
    assert not signatures.verify(public, signature + b"\0", message)


def test_the_backend_is_libsodium_where_pynacl_is_and_openssl_when_forced_pure() -> None:
    expected = "openssl" if FORCED_PURE or signatures.sodium_check() is None else "libsodium"
    assert expected == signatures.BACKEND


_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
_PUBLIC = _KEY.public_key().public_bytes_raw()


@settings(max_examples=300, deadline=None)
@given(message=st.binary(max_size=64), which=st.sampled_from(["key", "signature", "message"]),
       bit=st.integers(0, 511))
def test_libsodium_and_openssl_agree_on_every_flipped_bit(message: bytes, which: str,
                                                          bit: int) -> None:
    sodium = signatures.sodium_check()
    if sodium is None:
        pytest.skip("PyNaCl is not installed here")
    parts = {"key": bytearray(_PUBLIC), "signature": bytearray(_KEY.sign(message)),
             "message": bytearray(message or b"\0")}
    flipped = parts[which]
    flipped[bit % (8 * len(flipped)) // 8] ^= 1 << bit % 8
    key, signature, body = (bytes(parts[k]) for k in ("key", "signature", "message"))
    if signatures.weak_point(key) or signatures.weak_point(signature[:32]):
        return  # refused before either backend looks
    assert sodium(key, signature, body) == signatures.openssl_check(key, signature, body)


def test_random_keys_and_signatures_agree() -> None:
    sodium = signatures.sodium_check()
    if sodium is None:
        pytest.skip("PyNaCl is not installed here")
    for _ in range(200):
        key, signature, body = os.urandom(32), os.urandom(64), os.urandom(20)
        if not (signatures.weak_point(key) or signatures.weak_point(signature[:32])):
            assert sodium(key, signature, body) == signatures.openssl_check(key, signature, body)
