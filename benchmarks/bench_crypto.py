"""Benchmark the wire layer's cryptography: handshake, transport throughput, gossip signatures.

Everything runs in-process through the sans-IO objects (no sockets). Where the independent
``noiseprotocol`` package does the same job it is measured too, as a reference.

    python benchmarks/bench_crypto.py [--runs N] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from bzzz_edge.wire import constants as C
from bzzz_edge.wire.envelope import (
    GossipMessage,
    check_timestamp,
    decode_envelope,
    encode_envelope,
    sign_gossip,
    verify_gossip,
)
from bzzz_edge.wire.framing import FrameDecoder, encode_frame
from bzzz_edge.wire.noise import Handshake, SecureStream, identity_payload

PSK = os.urandom(32)
NETWORK_ID = b"bench-network"
FRAME = 64 * 1024


def _keys() -> tuple[X25519PrivateKey, Ed25519PrivateKey]:
    return X25519PrivateKey.generate(), Ed25519PrivateKey.generate()


def _our_handshake(a: tuple, b: tuple) -> tuple[Handshake, Handshake]:
    ini = Handshake(initiator=True, static_key=a[0], identity_key=a[1], psk=PSK)
    res = Handshake(initiator=False, static_key=b[0], identity_key=b[1], psk=PSK)
    res.feed(ini.feed(res.feed(ini.start())))
    assert ini.complete and res.complete
    return ini, res


def _reference_handshake(a: tuple, b: tuple) -> None:
    from noise.connection import Keypair, NoiseConnection

    conns = []
    for initiator, (static, identity) in ((True, a), (False, b)):
        conn = NoiseConnection.from_name(C.NOISE_PROTOCOL_NAME)
        conn.set_psks(PSK)
        conn.set_prologue(C.NOISE_PROLOGUE)
        raw = static.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        conn.set_keypair_from_private_bytes(Keypair.STATIC, raw)
        conn.set_as_initiator() if initiator else conn.set_as_responder()
        conn.start_handshake()
        conns.append((conn, identity_payload(identity, static.public_key().public_bytes_raw())))
    (ini, ini_payload), (res, res_payload) = conns
    res.read_message(ini.write_message(b""))
    ini.read_message(res.write_message(res_payload))
    res.read_message(ini.write_message(ini_payload))
    assert ini.handshake_finished and res.handshake_finished


def _median_seconds(fn: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def bench_handshake(runs: int) -> dict[str, float]:
    a, b = _keys(), _keys()
    out = {"ours_ms": _median_seconds(lambda: _our_handshake(a, b), runs) * 1e3}
    with contextlib.suppress(ImportError):
        out["noiseprotocol_ms"] = _median_seconds(lambda: _reference_handshake(a, b), runs) * 1e3
    return out


def bench_transport(frames: int, repeats: int) -> dict[str, float]:
    """64 KiB application frames: frame, encrypt, decrypt, reassemble; payload MB/s."""
    ini, res = _our_handshake(_keys(), _keys())
    sender, receiver = SecureStream(ini.result.session), SecureStream(res.result.session)
    decoder = FrameDecoder()
    payload = os.urandom(FRAME)

    def run() -> None:
        received = 0
        for _ in range(frames):
            for chunk in receiver.feed(sender.send(encode_frame(payload))):
                received += sum(len(f) for f in decoder.feed(chunk))
        assert received == frames * FRAME

    out = {"ours_MB_per_s": frames * FRAME / _median_seconds(run, repeats) / 1e6}
    with contextlib.suppress(ImportError):
        out["noiseprotocol_MB_per_s"] = _reference_transport(frames, repeats, payload)
    return out


def _reference_transport(frames: int, repeats: int, payload: bytes) -> float:
    """The same bytes through noiseprotocol's transport (no length prefixes or frame decoder)."""
    from noise.connection import NoiseConnection

    key = os.urandom(32)
    conn = NoiseConnection.from_name(C.NOISE_PROTOCOL_NAME).noise_protocol
    from noise.state import CipherState

    send, recv = CipherState(conn), CipherState(conn)
    send.initialize_key(key)
    recv.initialize_key(key)
    step = C.NOISE_MAX_PLAINTEXT_LEN
    framed = encode_frame(payload)

    def run() -> None:
        for _ in range(frames):
            for i in range(0, len(framed), step):
                recv.decrypt_with_ad(b"", send.encrypt_with_ad(b"", framed[i : i + step]))

    return frames * FRAME / _median_seconds(run, repeats) / 1e6


def bench_gossip(count: int, repeats: int) -> dict[str, float]:
    key = Ed25519PrivateKey.generate()
    body = os.urandom(256)
    now_ms = 1_700_000_000_000

    def sign() -> list[bytes]:
        return [
            encode_envelope(
                sign_gossip(
                    key,
                    network_id=NETWORK_ID,
                    seq=i,
                    timestamp_ms=now_ms,
                    topic="bzzz/coordination/v1",
                    body=body,
                )
            )
            for i in range(count)
        ]

    wires = sign()

    def receive() -> None:
        for wire in wires:
            message = decode_envelope(wire)
            assert isinstance(message, GossipMessage)
            _ = message.msg_id
            verify_gossip(message, NETWORK_ID)
            check_timestamp(message, now_ms=now_ms)

    def decode_only() -> None:
        for wire in wires:
            _ = decode_envelope(wire).msg_id  # type: ignore[union-attr]

    return {
        "sign_encode_per_s": count / _median_seconds(sign, repeats),
        "decode_verify_per_s": count / _median_seconds(receive, repeats),
        "decode_msgid_only_per_s": count / _median_seconds(decode_only, repeats),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="handshakes to time")
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke test")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    runs = 20 if args.quick else args.runs
    results = {
        "handshake": bench_handshake(runs),
        "transport_64KiB_frames": bench_transport(
            50 if args.quick else 1000, 3 if args.quick else 5
        ),
        "gossip_256B_body": bench_gossip(200 if args.quick else 2000, 3 if args.quick else 5),
    }
    if args.json:
        print(json.dumps(results))
        return 0
    for section, figures in results.items():
        for name, value in figures.items():
            print(f"{section:24} {name:26} {value:12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
