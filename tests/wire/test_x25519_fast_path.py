"""X25519 through cryptography's private Rust functions (``wire/_noise_state``), used only once
proven at import to agree with the public methods and to refuse what they refuse; otherwise
(a release that moved or changed them) the public methods. Both ways are run here: with the
installed cryptography the fast path passes its self-test, so nothing else runs the fallback."""

from __future__ import annotations

import pytest
from cryptography.hazmat.bindings._rust import openssl as rust_openssl
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from bzzz_edge.errors import RemoteProtocolError
from bzzz_edge.wire import _noise_state

PUBLIC = (X25519PrivateKey.generate, X25519PublicKey.from_public_bytes)
FAST = (rust_openssl.x25519.generate_key, rust_openssl.x25519.from_public_bytes)


class _Moved:
    """cryptography's x25519 Rust module as a release that renamed its functions would be."""


class _LaxKey(X25519PrivateKey):
    """A real key whose exchange gives the all-zero secret for a low-order point instead of
    refusing it (what a changed private function could do)."""

    def __init__(self) -> None:
        self.key = FAST[0]()

    def exchange(self, peer_public_key: X25519PublicKey) -> bytes:
        if peer_public_key.public_bytes_raw() == bytes(32):
            return bytes(32)
        return self.key.exchange(peer_public_key)

    def public_key(self) -> X25519PublicKey:
        return self.key.public_key()

    def private_bytes(self, *args: object, **kwargs: object) -> bytes:
        raise NotImplementedError

    def private_bytes_raw(self) -> bytes:
        raise NotImplementedError

    def __copy__(self) -> _LaxKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> _LaxKey:
        return self


class _Lax:
    """cryptography's x25519 Rust module as a release whose keys accept a low-order point."""

    def __init__(self) -> None:
        self.generate_key = _LaxKey
        self.from_public_bytes = FAST[1]


def test_the_fast_path_is_taken_with_this_cryptography() -> None:
    assert _noise_state._x25519_functions() == FAST


def test_a_release_without_the_private_functions_gets_the_public_ones_which_agree(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fast = _noise_state._x25519_functions()
    monkeypatch.setattr(rust_openssl, "x25519", _Moved())
    generate, read = _noise_state._x25519_functions()
    assert (generate, read) == PUBLIC
    monkeypatch.undo()
    ours, theirs = generate(), fast[0]()
    assert ours.exchange(fast[1](theirs.public_key().public_bytes_raw())) == \
        theirs.exchange(read(ours.public_key().public_bytes_raw()))
    for reader in (read, fast[1]):  # a point of small order (all-zero secret): both refuse
        with pytest.raises(ValueError):
            ours.exchange(reader(bytes(32)))
    monkeypatch.setattr(_noise_state, "_x25519_public", read)
    with pytest.raises(RemoteProtocolError):
        _noise_state.dh(ours, bytes(32))


def test_a_fast_path_that_would_accept_a_low_order_point_is_not_used(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Its keys are real ones, so they agree; only the refusal differs. The self-test must
    # catch that, or a peer's all-zero key would give an all-zero shared secret.
    monkeypatch.setattr(rust_openssl, "x25519", _Lax())
    assert _noise_state._x25519_functions() == PUBLIC
