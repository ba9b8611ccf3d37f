"""Noise CipherState and SymmetricState (Noise spec rev 34, sections 4, 5.1, 5.2). No I/O.

Fixed to one suite: 25519 / ChaChaPoly / BLAKE2b, all from ``cryptography``. HASHLEN is 64, so
cipher keys derived by HKDF are truncated to 32 bytes as the spec requires. The handshake pattern
itself lives in ``noise.py``; this module only knows the primitive operations.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from bzzz_edge.errors import LocalProtocolError, RemoteProtocolError
from bzzz_edge.wire.constants import NOISE_DH_LEN, NOISE_MAX_NONCE, NOISE_TAG_LEN

HASHLEN = 64
KEYLEN = 32
_Bytes = bytes | bytearray | memoryview
_NONCE = struct.Struct("<4xQ")  # ChaChaPoly nonce: 32 zero bits then the counter little-endian

# cryptography's X25519PrivateKey.generate and X25519PublicKey.from_public_bytes first import its
# OpenSSL backend module, only to ask whether OpenSSL has X25519 (every OpenSSL cryptography 50
# builds with has): that module brings RSA, EC, DSA, padding and the OID tables, 0.8 MB resident
# in every node, for nothing else. The Rust functions those methods then call are called
# directly, once proven here to make and read keys that agree; should a release move or change
# them (a private module), the public methods are used.


def _x25519_functions() -> tuple[Callable[[], X25519PrivateKey],
                                 Callable[[bytes], X25519PublicKey]]:
    public_ones = X25519PrivateKey.generate, X25519PublicKey.from_public_bytes
    try:
        from cryptography.hazmat.bindings._rust import openssl as _rust_openssl

        generate, read = _rust_openssl.x25519.generate_key, _rust_openssl.x25519.from_public_bytes
        ours, theirs = generate(), generate()
        mine = read(ours.public_key().public_bytes_raw())
        if not (isinstance(ours, X25519PrivateKey) and isinstance(mine, X25519PublicKey)
                and ours.exchange(read(theirs.public_key().public_bytes_raw()))
                == theirs.exchange(mine)):
            return public_ones
        try:  # a low-order point (all zeros) must be refused as the public way refuses it
            ours.exchange(read(bytes(32)))
        except ValueError:
            pass
        else:
            return public_ones
    except Exception:  # another cryptography: whatever it raises, the public way works
        return public_ones
    return generate, read


new_x25519_key, _x25519_public = _x25519_functions()


def hash_(data: bytes) -> bytes:
    """HASH(data): BLAKE2b with a 64-byte digest."""
    digest = hashes.Hash(hashes.BLAKE2b(HASHLEN))
    digest.update(data)
    return digest.finalize()


def _hmac(key: bytes, data: bytes) -> bytes:
    mac = hmac.HMAC(key, hashes.BLAKE2b(HASHLEN))
    mac.update(data)
    return mac.finalize()


def hkdf2(chaining_key: bytes, input_key_material: bytes) -> tuple[bytes, bytes]:
    """HKDF(ck, ikm, 2) as in Noise spec section 4.3."""
    temp_key = _hmac(chaining_key, input_key_material)
    output1 = _hmac(temp_key, b"\x01")
    output2 = _hmac(temp_key, output1 + b"\x02")
    return output1, output2


def hkdf3(chaining_key: bytes, input_key_material: bytes) -> tuple[bytes, bytes, bytes]:
    """HKDF(ck, ikm, 3) as in Noise spec section 4.3."""
    temp_key = _hmac(chaining_key, input_key_material)
    output1 = _hmac(temp_key, b"\x01")
    output2 = _hmac(temp_key, output1 + b"\x02")
    output3 = _hmac(temp_key, output2 + b"\x03")
    return output1, output2, output3


def dh(private: X25519PrivateKey, public: bytes) -> bytes:
    """DH(key_pair, public_key) over X25519.

    Raises:
        RemoteProtocolError: the peer's public key is malformed or of low order (all-zero output).
    """
    if len(public) != NOISE_DH_LEN:
        raise RemoteProtocolError(f"X25519 public key must be {NOISE_DH_LEN} bytes")
    try:
        return private.exchange(_x25519_public(public))
    except ValueError as exc:
        # cryptography refuses low-order points, whose shared secret would be all zeros
        raise RemoteProtocolError("peer sent an unusable X25519 public key") from exc


class CipherState:
    """A ChaCha20-Poly1305 key and a nonce counter; without a key it passes data through."""

    __slots__ = ("_aead", "_n")

    def __init__(self, key: bytes | None = None, nonce: int = 0) -> None:
        if key is not None and len(key) != KEYLEN:
            raise LocalProtocolError(f"cipher key must be {KEYLEN} bytes")
        if not 0 <= nonce <= NOISE_MAX_NONCE:
            raise LocalProtocolError("nonce out of range")
        self._aead = ChaCha20Poly1305(key) if key is not None else None
        self._n = nonce

    @property
    def has_key(self) -> bool:
        return self._aead is not None

    @property
    def nonce(self) -> int:
        """The nonce the next encryption or decryption will use."""
        return self._n

    def encrypt_with_ad(self, ad: bytes, plaintext: _Bytes) -> bytes:
        """ENCRYPT(k, n++, ad, plaintext), or the plaintext itself without a key.

        Raises:
            LocalProtocolError: the nonce is exhausted (2**64-1 is reserved); close the session.
        """
        if self._aead is None:
            return bytes(plaintext)
        if self._n >= NOISE_MAX_NONCE:
            raise LocalProtocolError("send nonce exhausted; the session must be closed")
        ciphertext = self._aead.encrypt(_NONCE.pack(self._n), plaintext, ad)
        self._n += 1
        return ciphertext

    def decrypt_with_ad(self, ad: bytes, ciphertext: _Bytes) -> bytes:
        """DECRYPT(k, n++, ad, ciphertext); on failure the nonce does not advance.

        Raises:
            RemoteProtocolError: authentication failed, or the peer exhausted the nonce space.
        """
        if self._aead is None:
            return bytes(ciphertext)
        if self._n >= NOISE_MAX_NONCE:
            raise RemoteProtocolError("receive nonce exhausted; the peer sent too many messages")
        if len(ciphertext) < NOISE_TAG_LEN:
            raise RemoteProtocolError("ciphertext shorter than its authentication tag")
        try:
            plaintext = self._aead.decrypt(_NONCE.pack(self._n), ciphertext, ad)
        except InvalidTag:
            raise RemoteProtocolError("message failed authentication") from None
        self._n += 1
        return plaintext


class SymmetricState:
    """Chaining key, handshake hash and the current handshake CipherState (spec 5.2)."""

    __slots__ = ("cipher", "ck", "h")

    def __init__(self, protocol_name: bytes) -> None:
        if len(protocol_name) <= HASHLEN:
            self.h = protocol_name.ljust(HASHLEN, b"\x00")
        else:
            self.h = hash_(protocol_name)
        self.ck = self.h
        self.cipher = CipherState()

    def mix_key(self, input_key_material: bytes) -> None:
        self.ck, temp_k = hkdf2(self.ck, input_key_material)
        self.cipher = CipherState(temp_k[:KEYLEN])

    def mix_hash(self, data: bytes) -> None:
        self.h = hash_(self.h + data)

    def mix_key_and_hash(self, input_key_material: bytes) -> None:
        self.ck, temp_h, temp_k = hkdf3(self.ck, input_key_material)
        self.mix_hash(temp_h)
        self.cipher = CipherState(temp_k[:KEYLEN])

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = self.cipher.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        plaintext = self.cipher.decrypt_with_ad(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        """The initiator-to-responder and responder-to-initiator transport ciphers."""
        temp_k1, temp_k2 = hkdf2(self.ck, b"")
        return CipherState(temp_k1[:KEYLEN]), CipherState(temp_k2[:KEYLEN])
