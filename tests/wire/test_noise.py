"""The Noise secure channel: our handshake against itself and against ``noiseprotocol``."""

from __future__ import annotations

import hashlib
import os

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from noise.connection import Keypair, NoiseConnection
from noise.state import CipherState as RefCipherState

from bzzz_edge.errors import BzzzError, LocalProtocolError, RemoteProtocolError
from bzzz_edge.wire import constants as C
from bzzz_edge.wire._noise_state import CipherState, SymmetricState, dh
from bzzz_edge.wire.noise import (
    Handshake,
    HandshakeError,
    PeerIdentityMismatch,
    SecureSession,
    SecureStream,
)

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Node:
    """Key material of one test node."""

    def __init__(self) -> None:
        self.static = X25519PrivateKey.generate()
        self.identity = Ed25519PrivateKey.generate()
        self.static_pub = self.static.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.static_priv = self.static.private_bytes(
            Encoding.Raw, PrivateFormat.Raw, NoEncryption()
        )
        self.identity_pub = self.identity.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.node_id = hashlib.sha256(self.identity_pub).digest()

    def handshake(self, initiator: bool, psk: bytes, **kwargs: object) -> Handshake:
        return Handshake(
            initiator=initiator,
            static_key=self.static,
            identity_key=self.identity,
            psk=psk,
            **kwargs,  # type: ignore[arg-type]
        )

    def payload(self, static_pub: bytes | None = None) -> bytes:
        """Identity payload built from the spec, independently of noise.py."""
        signed = C.HANDSHAKE_IDENTITY_DOMAIN + (static_pub or self.static_pub)
        return self.identity_pub + self.identity.sign(signed)


def _prefix(message: bytes) -> bytes:
    return len(message).to_bytes(2, "big") + bytes(message)


def _unprefix(wire: bytes) -> list[bytes]:
    messages, pos = [], 0
    while pos < len(wire):
        length = int.from_bytes(wire[pos : pos + 2], "big")
        messages.append(wire[pos + 2 : pos + 2 + length])
        pos += 2 + length
    assert pos == len(wire)
    return messages


def _reference(node: Node, psk: bytes, *, initiator: bool, name: bytes = C.NOISE_PROTOCOL_NAME):
    conn = NoiseConnection.from_name(name)
    conn.set_psks(psk)
    conn.set_prologue(C.NOISE_PROLOGUE)
    conn.set_keypair_from_private_bytes(Keypair.STATIC, node.static_priv)
    if initiator:
        conn.set_as_initiator()
    else:
        conn.set_as_responder()
    conn.start_handshake()
    return conn


def _verify_payload(payload: bytes, static_pub: bytes) -> bytes:
    """Check an identity payload with cryptography directly; return the node ID it proves."""
    public = bytes(payload[:32])
    Ed25519PublicKey.from_public_bytes(public).verify(
        bytes(payload[32:]), C.HANDSHAKE_IDENTITY_DOMAIN + static_pub
    )
    return hashlib.sha256(public).digest()


def _complete(psk: bytes = b"k" * 32) -> tuple[Node, Node, Handshake, Handshake, list[bytes]]:
    a, b = Node(), Node()
    ini, res = a.handshake(True, psk), b.handshake(False, psk)
    m1 = ini.start()
    m2 = res.feed(m1)
    m3 = ini.feed(m2)
    assert res.feed(m3) == b""
    return a, b, ini, res, [m1, m2, m3]


# --- our handshake with itself ----------------------------------------------------------------


def test_handshake_authenticates_both_node_ids_and_keys_transport() -> None:
    a, b, ini, res, wire = _complete()
    assert [len(m) for m in wire] == [
        2 + C.HANDSHAKE_MSG1_LEN,
        2 + C.HANDSHAKE_MSG2_LEN,
        2 + C.HANDSHAKE_MSG3_LEN,
    ]
    assert ini.complete and res.complete
    assert ini.result.peer_id == b.node_id and res.result.peer_id == a.node_id
    assert ini.result.peer_identity_key == b.identity_pub
    assert res.result.peer_static_key == a.static_pub
    assert ini.result.session.handshake_hash == res.result.session.handshake_hash
    sa, sb = SecureStream(ini.result.session), SecureStream(res.result.session)
    assert sb.feed(sa.send(b"ping")) == [b"ping"]
    assert sa.feed(sb.send(b"pong")) == [b"pong"]


def test_each_handshake_gets_fresh_session_keys() -> None:
    _, _, first, _, wire1 = _complete()
    _, _, second, _, wire2 = _complete()
    assert first.result.session.handshake_hash != second.result.session.handshake_hash
    assert wire1[0] != wire2[0]


def test_different_prologue_fails_the_handshake() -> None:
    psk = os.urandom(32)
    ini = Node().handshake(True, psk, prologue=b"bzzz-edge/2")
    res = Node().handshake(False, psk)
    with pytest.raises(HandshakeError, match="message 1"):
        res.feed(ini.start())


# --- interop with noiseprotocol ---------------------------------------------------------------


def test_interop_ours_initiator_with_noiseprotocol_responder() -> None:
    psk = os.urandom(32)
    ours, theirs = Node(), Node()
    ini = ours.handshake(True, psk, expected_peer_id=theirs.node_id)
    ref = _reference(theirs, psk, initiator=False)
    assert ref.read_message(_unprefix(ini.start())[0]) == b""
    msg3 = ini.feed(_prefix(ref.write_message(theirs.payload())))
    assert _verify_payload(ref.read_message(_unprefix(msg3)[0]), ours.static_pub) == ours.node_id
    assert ref.handshake_finished and ini.complete
    assert ini.result.peer_id == theirs.node_id
    assert ref.get_handshake_hash() == ini.result.session.handshake_hash
    stream = SecureStream(ini.result.session)
    for i in range(5):
        assert ref.decrypt(_unprefix(stream.send(b"to ref %d" % i))[0]) == b"to ref %d" % i
        assert stream.feed(_prefix(ref.encrypt(b"to ours %d" % i))) == [b"to ours %d" % i]


def test_interop_ours_responder_with_noiseprotocol_initiator() -> None:
    psk = os.urandom(32)
    ours, theirs = Node(), Node()
    res = ours.handshake(False, psk)
    ref = _reference(theirs, psk, initiator=True)
    msg2 = res.feed(_prefix(ref.write_message(b"")))
    assert _verify_payload(ref.read_message(_unprefix(msg2)[0]), ours.static_pub) == ours.node_id
    assert res.feed(_prefix(ref.write_message(theirs.payload()))) == b""
    assert ref.handshake_finished and res.complete
    assert res.result.peer_id == theirs.node_id
    assert res.result.peer_static_key == theirs.static_pub
    assert ref.get_handshake_hash() == res.result.session.handshake_hash
    stream = SecureStream(res.result.session)
    for i in range(5):
        assert stream.feed(_prefix(ref.encrypt(b"to ours %d" % i))) == [b"to ours %d" % i]
        assert ref.decrypt(_unprefix(stream.send(b"to ref %d" % i))[0]) == b"to ref %d" % i


def test_interop_large_plaintext_is_split_into_max_size_noise_messages() -> None:
    psk = os.urandom(32)
    ours, theirs = Node(), Node()
    ini = ours.handshake(True, psk)
    ref = _reference(theirs, psk, initiator=False)
    ref.read_message(_unprefix(ini.start())[0])
    ref.read_message(_unprefix(ini.feed(_prefix(ref.write_message(theirs.payload()))))[0])
    stream = SecureStream(ini.result.session)
    data = os.urandom(3 * C.NOISE_MAX_PLAINTEXT_LEN + 1234)
    messages = _unprefix(stream.send(data))
    assert [len(m) for m in messages] == [C.NOISE_MAX_MESSAGE_LEN] * 3 + [1234 + C.NOISE_TAG_LEN]
    assert b"".join(ref.decrypt(m) for m in messages) == data
    assert ini.result.session.send_nonce == 4
    # and the other way, delivered to us one byte at a time
    wire = b"".join(_prefix(ref.encrypt(data[i : i + 1000])) for i in range(0, 5000, 1000))
    chunks = [c for i in range(len(wire)) for c in stream.feed(wire[i : i + 1])]
    assert b"".join(chunks) == data[:5000]
    assert stream.buffered == 0


def test_interop_cipher_state_near_the_nonce_limit() -> None:
    key = os.urandom(32)
    ref = NoiseConnection.from_name(C.NOISE_PROTOCOL_NAME).noise_protocol
    theirs = RefCipherState(ref)
    theirs.initialize_key(key)
    theirs.set_nonce(C.NOISE_MAX_NONCE - 1)
    ours = CipherState(key, nonce=C.NOISE_MAX_NONCE - 1)
    ciphertext = ours.encrypt_with_ad(b"ad", b"last message")
    assert theirs.decrypt_with_ad(b"ad", ciphertext) == b"last message"
    with pytest.raises(LocalProtocolError, match="nonce exhausted"):
        ours.encrypt_with_ad(b"ad", b"one too many")
    receiver = CipherState(key, nonce=C.NOISE_MAX_NONCE)
    with pytest.raises(RemoteProtocolError, match="nonce exhausted"):
        receiver.decrypt_with_ad(b"ad", ciphertext)


# --- the network key gates everything ---------------------------------------------------------


def test_wrong_psk_responder_refuses_message1_and_sends_nothing() -> None:
    ini = Node().handshake(True, b"a" * 32)
    res = Node().handshake(False, b"b" * 32)
    with pytest.raises(HandshakeError, match="wrong network key"):
        res.feed(ini.start())
    assert not res.complete
    with pytest.raises(LocalProtocolError):
        res.feed(b"")


def test_pskless_noiseprotocol_initiator_learns_nothing() -> None:
    res = Node().handshake(False, os.urandom(32))
    attacker = _reference(Node(), os.urandom(32), initiator=True)
    replies = []
    with pytest.raises(HandshakeError):
        replies.append(res.feed(_prefix(attacker.write_message(b""))))
    assert replies == []  # not one byte goes back: the connection is simply closed


def test_pskless_responder_cannot_read_message1_which_carries_no_identity() -> None:
    ours = Node()
    msg1 = _unprefix(ours.handshake(True, os.urandom(32)).start())[0]
    assert len(msg1) == C.NOISE_DH_LEN + C.NOISE_TAG_LEN  # ephemeral key and a MAC, no more
    for secret in (ours.static_pub, ours.identity_pub, ours.node_id):
        assert secret[:8] not in msg1
    attacker = _reference(Node(), os.urandom(32), initiator=False)
    with pytest.raises(InvalidTag):
        attacker.read_message(msg1)


def test_initiator_never_sends_its_identity_to_a_pskless_responder() -> None:
    """An attacker that ignores message 1's bad MAC and answers anyway gets no message 3."""
    ours, attacker = Node(), Node()
    ini = ours.handshake(True, b"n" * 32)
    msg1 = _unprefix(ini.start())[0]
    sym = SymmetricState(C.NOISE_PROTOCOL_NAME)
    sym.mix_hash(C.NOISE_PROLOGUE)
    sym.mix_key_and_hash(b"x" * 32)  # the attacker's guess at the network key
    re = msg1[:32]
    sym.mix_hash(re)
    sym.mix_key(re)
    sym.mix_hash(msg1[32:])  # cannot check the MAC; pretend
    e = X25519PrivateKey.generate()
    e_pub = e.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    sym.mix_hash(e_pub)
    sym.mix_key(e_pub)
    sym.mix_key(dh(e, re))
    msg2 = e_pub + sym.encrypt_and_hash(attacker.static_pub)
    sym.mix_key(dh(attacker.static, re))
    msg2 += sym.encrypt_and_hash(attacker.payload())
    sent = []
    with pytest.raises(HandshakeError, match="message 2"):
        sent.append(ini.feed(_prefix(msg2)))
    assert sent == [] and not ini.complete


def test_psk3_would_reveal_the_responder_to_pskless_initiators_hence_psk0() -> None:
    """Why the pattern is XXpsk0: under XXpsk3 a scanner without the key decrypts message 2."""
    name = C.NOISE_PROTOCOL_NAME.replace(b"psk0", b"psk3")
    victim, scanner = Node(), Node()
    responder = _reference(victim, b"v" * 32, initiator=False, name=name)
    initiator = _reference(scanner, b"s" * 32, initiator=True, name=name)
    responder.read_message(initiator.write_message(b""))
    leaked = initiator.read_message(responder.write_message(victim.payload()))
    assert bytes(leaked[:32]) == victim.identity_pub  # psk3: identity leaked to a PSK-less peer
    # Under psk0 the same scanner's message 1 is refused and answered with nothing, because of
    # the key alone: the same message under the right key is answered with message 2.
    scanner_psk0 = _reference(scanner, b"s" * 32, initiator=True)
    answers = []
    with pytest.raises(HandshakeError, match="message 1"):
        answers.append(victim.handshake(False, b"v" * 32).feed(
            _prefix(scanner_psk0.write_message(b""))))
    assert answers == []
    member_psk0 = _reference(scanner, b"v" * 32, initiator=True)
    reply = victim.handshake(False, b"v" * 32).feed(_prefix(member_psk0.write_message(b"")))
    assert len(reply) == 2 + C.HANDSHAKE_MSG2_LEN


# --- identity checks --------------------------------------------------------------------------


def test_expected_peer_id_mismatch_fails_before_message3() -> None:
    psk = os.urandom(32)
    expected, impostor = Node(), Node()
    ini = Node().handshake(True, psk, expected_peer_id=expected.node_id)
    res = impostor.handshake(False, psk)
    sent = []
    with pytest.raises(PeerIdentityMismatch) as info:
        sent.append(ini.feed(res.feed(ini.start())))
    assert sent == [] and not ini.complete
    assert info.value.expected == expected.node_id and info.value.actual == impostor.node_id
    assert isinstance(info.value, RemoteProtocolError)


def test_expected_peer_id_match_completes() -> None:
    psk = os.urandom(32)
    peer = Node()
    ini = Node().handshake(True, psk, expected_peer_id=peer.node_id)
    res = peer.handshake(False, psk)
    res.feed(ini.feed(res.feed(ini.start())))
    assert ini.complete and ini.result.peer_id == peer.node_id


@pytest.mark.parametrize("role", ["responder", "initiator"])
def test_identity_signature_must_cover_the_senders_static_key(role: str) -> None:
    psk = os.urandom(32)
    ours, theirs = Node(), Node()
    bad_payload = theirs.payload(static_pub=Node().static_pub)  # signs someone else's key
    if role == "responder":  # noiseprotocol plays a responder with a bad certificate
        ini = ours.handshake(True, psk)
        ref = _reference(theirs, psk, initiator=False)
        ref.read_message(_unprefix(ini.start())[0])
        with pytest.raises(HandshakeError, match="identity signature"):
            ini.feed(_prefix(ref.write_message(bad_payload)))
    else:
        res = ours.handshake(False, psk)
        ref = _reference(theirs, psk, initiator=True)
        ref.read_message(_unprefix(res.feed(_prefix(ref.write_message(b""))))[0])
        with pytest.raises(HandshakeError, match="identity signature"):
            res.feed(_prefix(ref.write_message(bad_payload)))


def test_identity_payload_of_wrong_size_is_refused() -> None:
    psk = os.urandom(32)
    ours, theirs = Node(), Node()
    ini = ours.handshake(True, psk)
    ref = _reference(theirs, psk, initiator=False)
    ref.read_message(_unprefix(ini.start())[0])
    with pytest.raises(HandshakeError, match="length"):  # framing length no longer matches
        ini.feed(_prefix(ref.write_message(theirs.payload() + b"x")))


def test_low_order_ephemeral_key_from_a_network_member_is_refused() -> None:
    """Even with the network key, an all-zero ephemeral (a low-order point) fails cleanly."""
    psk = os.urandom(32)
    sym = SymmetricState(C.NOISE_PROTOCOL_NAME)
    sym.mix_hash(C.NOISE_PROLOGUE)
    sym.mix_key_and_hash(psk)
    sym.mix_hash(bytes(32))
    sym.mix_key(bytes(32))
    msg1 = bytes(32) + sym.encrypt_and_hash(b"")
    with pytest.raises(HandshakeError, match="unusable X25519"):
        Node().handshake(False, psk).feed(_prefix(msg1))


def test_nonempty_message1_payload_is_refused() -> None:
    psk = os.urandom(32)
    attacker = _reference(Node(), psk, initiator=True)
    with pytest.raises(HandshakeError, match="length 49, expected 48"):
        Node().handshake(False, psk).feed(_prefix(attacker.write_message(b"x")))


# --- tampering, truncation, replay ------------------------------------------------------------


@pytest.mark.parametrize("index", [0, 1, 2])
def test_every_bit_flip_in_a_handshake_message_fails_the_receiver(index: int) -> None:
    psk = os.urandom(32)
    a, b = Node(), Node()
    length = [C.HANDSHAKE_MSG1_LEN, C.HANDSHAKE_MSG2_LEN, C.HANDSHAKE_MSG3_LEN][index]
    for position in range(2, 2 + length, 3):
        ini, res = a.handshake(True, psk), b.handshake(False, psk)
        wire = [ini.start()]
        if index >= 1:
            wire.append(res.feed(wire[0]))
        if index == 2:
            wire.append(ini.feed(wire[1]))
        receiver = res if index != 1 else ini
        tampered = bytearray(wire[index])
        tampered[position] ^= 1 << (position % 8)
        with pytest.raises(HandshakeError):
            receiver.feed(bytes(tampered))


def test_truncated_handshake_message_waits_and_wrong_length_fails_at_once() -> None:
    psk = os.urandom(32)
    ini, res = Node().handshake(True, psk), Node().handshake(False, psk)
    msg1 = ini.start()
    assert res.feed(msg1[:1]) == b""
    assert res.feed(msg1[1:-1]) == b""
    assert not res.complete
    assert len(res.feed(msg1[-1:])) == 2 + C.HANDSHAKE_MSG2_LEN
    other = Node().handshake(False, psk)
    with pytest.raises(HandshakeError, match="length 47, expected 48"):
        other.feed(_prefix(msg1[2:-1]))
    huge = Node().handshake(False, psk)
    with pytest.raises(HandshakeError, match="length 65535"):
        huge.feed(b"\xff\xff")  # refused on the prefix alone, nothing buffered


def test_replayed_handshake_messages_fail() -> None:
    psk = os.urandom(32)
    a, b, _, _, recorded = _complete(psk)
    fresh_responder = b.handshake(False, psk)
    fresh_responder.feed(recorded[0])  # a replayed message 1 draws a reply, useless to a replayer
    with pytest.raises(HandshakeError, match="message 3"):
        fresh_responder.feed(recorded[2])
    fresh_initiator = a.handshake(True, psk)
    fresh_initiator.start()
    with pytest.raises(HandshakeError, match="message 2"):
        fresh_initiator.feed(recorded[1])


def test_transport_data_right_after_message3_is_kept_as_leftover() -> None:
    psk = os.urandom(32)
    ini, res = Node().handshake(True, psk), Node().handshake(False, psk)
    msg3 = ini.feed(res.feed(ini.start()))
    early = SecureStream(ini.result.session).send(b"first frame")
    res.feed(msg3 + early[:5])
    stream = SecureStream(res.result.session)
    assert stream.feed(res.result.leftover) == []
    assert stream.feed(early[5:]) == [b"first frame"]


def test_bytes_after_message1_or_message2_are_refused() -> None:
    psk = os.urandom(32)
    ini, res = Node().handshake(True, psk), Node().handshake(False, psk)
    with pytest.raises(HandshakeError, match="unexpected bytes after handshake message 1"):
        res.feed(ini.start() + b"\x00")
    ini, res = Node().handshake(True, psk), Node().handshake(False, psk)
    with pytest.raises(HandshakeError, match="unexpected bytes after handshake message 2"):
        ini.feed(res.feed(ini.start()) + b"\x00\x10")


def test_handshake_misuse_is_a_local_error() -> None:
    node, psk = Node(), os.urandom(32)
    with pytest.raises(LocalProtocolError, match="32 bytes"):
        node.handshake(True, b"short")
    with pytest.raises(LocalProtocolError, match="only the initiator"):
        node.handshake(False, psk, expected_peer_id=bytes(32))
    ini = node.handshake(True, psk)
    with pytest.raises(LocalProtocolError, match="state start"):
        ini.feed(b"\x00")
    with pytest.raises(LocalProtocolError, match="not complete"):
        _ = ini.result
    ini.start()
    with pytest.raises(LocalProtocolError, match="already started"):
        ini.start()
    assert node.handshake(False, psk).start() == b""
    *_, done, _ = _complete()
    with pytest.raises(LocalProtocolError, match="state done"):
        done.feed(b"")


# --- transport --------------------------------------------------------------------------------


def _streams() -> tuple[SecureStream, SecureStream]:
    _, _, ini, res, _ = _complete(os.urandom(32))
    return SecureStream(ini.result.session), SecureStream(res.result.session)


def test_transport_nonces_advance_once_per_noise_message() -> None:
    sender, receiver = _streams()
    assert sender.session.send_nonce == 0
    wire = (
        sender.send(b"a") + sender.send(b"b" * (C.NOISE_MAX_PLAINTEXT_LEN + 1)) + sender.send(b"")
    )
    assert sender.session.send_nonce == 3
    assert b"".join(receiver.feed(wire)) == b"a" + b"b" * (C.NOISE_MAX_PLAINTEXT_LEN + 1)
    assert receiver.session.recv_nonce == 3
    assert receiver.session.send_nonce == 0


@pytest.mark.parametrize("position", [0, 1, 2, 10, -1])
def test_tampered_transport_message_kills_the_stream(position: int) -> None:
    sender, receiver = _streams()
    wire = bytearray(sender.send(b"payload of some length"))
    wire[position] ^= 0x01
    with pytest.raises(RemoteProtocolError):
        # a changed length prefix leaves a partial message; the next message exposes it
        receiver.feed(bytes(wire) + sender.send(b"next") + b"\x00" * 400)
    with pytest.raises(LocalProtocolError, match="already failed"):
        receiver.feed(sender.send(b"more"))


def test_replayed_and_reordered_transport_messages_fail() -> None:
    sender, receiver = _streams()
    first, second = sender.send(b"one"), sender.send(b"two")
    assert receiver.feed(first) == [b"one"]
    with pytest.raises(RemoteProtocolError, match="authentication"):
        receiver.feed(first)
    sender, receiver = _streams()
    first, second = sender.send(b"one"), sender.send(b"two")
    with pytest.raises(RemoteProtocolError, match="authentication"):
        receiver.feed(second)


def test_transport_message_shorter_than_a_tag_is_refused() -> None:
    _, receiver = _streams()
    with pytest.raises(RemoteProtocolError, match="tag"):
        receiver.feed(b"\x00\x0f")


def test_session_refuses_oversized_plaintext() -> None:
    sender, _ = _streams()
    with pytest.raises(LocalProtocolError, match="exceeds"):
        sender.session.encrypt(bytes(C.NOISE_MAX_PLAINTEXT_LEN + 1))


def test_session_from_noise_split_matches_direction() -> None:
    key_a, key_b = os.urandom(32), os.urandom(32)
    left = SecureSession(CipherState(key_a), CipherState(key_b), b"h")
    right = SecureSession(CipherState(key_b), CipherState(key_a), b"h")
    assert right.decrypt(left.encrypt(b"x")) == b"x"
    assert left.decrypt(right.encrypt(b"y")) == b"y"


# --- fuzz -------------------------------------------------------------------------------------


def _mutate(data: bytes, flips: list[int], cut: int) -> bytes:
    out = bytearray(data[: max(0, len(data) - cut)])
    for flip in flips:
        if out:
            out[flip % len(out)] ^= 1 << (flip % 8)
    return bytes(out)


_FEED = st.lists(st.binary(max_size=300), max_size=4)


@FUZZ
@given(chunks=_FEED, initiator=st.booleans())
def test_fuzz_random_bytes_into_handshake_raise_only_package_errors(
    chunks: list[bytes], initiator: bool
) -> None:
    hs = Node().handshake(initiator, b"p" * 32)
    hs.start()
    try:
        for chunk in chunks:
            hs.feed(chunk)
    except BzzzError:
        pass
    assert not hs.complete


@FUZZ
@given(
    index=st.integers(0, 2),
    flips=st.lists(st.integers(0, 10_000), max_size=3),
    cut=st.integers(0, 3),
    split=st.integers(0, 200),
)
def test_fuzz_mutated_handshake_messages_raise_only_package_errors(
    index: int, flips: list[int], cut: int, split: int
) -> None:
    psk = b"p" * 32
    ini, res = Node().handshake(True, psk), Node().handshake(False, psk)
    wire = [ini.start()]
    if index >= 1:
        wire.append(res.feed(wire[0]))
    if index == 2:
        wire.append(ini.feed(wire[1]))
    receiver = ini if index == 1 else res
    data = _mutate(wire[index], flips, cut)
    try:
        receiver.feed(data[:split])
        if split < len(data):
            receiver.feed(data[split:])
    except BzzzError:
        assert not receiver.complete
        return
    if data == wire[index]:
        assert receiver.complete or index == 0
    else:
        assert not receiver.complete  # truncated: still waiting, never complete on bad bytes


@FUZZ
@given(
    payloads=st.lists(st.binary(max_size=70_000), min_size=1, max_size=3),
    flips=st.lists(st.integers(0, 300_000), max_size=2),
    cut=st.integers(0, 20),
    chunk=st.integers(1, 70_000),
    noise=st.binary(max_size=64),
)
def test_fuzz_secure_stream_mutations_raise_only_package_errors(
    payloads: list[bytes], flips: list[int], cut: int, chunk: int, noise: bytes
) -> None:
    sender, receiver = _streams()
    wire = b"".join(sender.send(p) for p in payloads)
    data = _mutate(wire, flips, cut) + noise
    received = []
    try:
        for i in range(0, len(data), chunk):
            received.extend(receiver.feed(data[i : i + chunk]))
    except BzzzError:
        return
    joined = b"".join(received)
    assert b"".join(payloads).startswith(joined)  # only authentic plaintext ever comes out
