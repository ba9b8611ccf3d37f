"""Transport benchmarks: handshake time, RPC round trip and throughput of one connection.

The round trip and throughput are measured between two processes, each with our full stack
(TCP, Noise, framing, envelopes, RPC): a connection manager in this process, and one in a
subprocess that serves an "echo" RPC (registered here, not in the node: it is a benchmark's
tool). Next
to it, in the same run, a plain trio TCP echo of the same payload between this process and a
subprocess: the ratio of the two is our stack's overhead. Medians of --runs runs.

    python benchmarks/bench_transport.py [--runs 5] [--count 2000]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import subprocess
import sys
import time

import trio

from bzzz_edge.identity import Identity
from bzzz_edge.net import ConnectionManager, NetLimits, PeerConnected, Source
from bzzz_edge.wire.envelope import DirectMessage, encode_envelope

PAYLOAD = bytes(range(256))
ECHO_SERVER = r"""
import sys, trio
async def handle(stream):
    buf = b""
    while True:
        data = await stream.receive_some(65536)
        if not data:
            return
        await stream.send_all(data)
async def main():
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    print(listeners[0].socket.getsockname()[1], flush=True)
    await trio.serve_listeners(handle, listeners)
trio.run(main)
"""

ECHO_PEER = r"""
import sys, trio
from bzzz_edge.identity import Identity
from bzzz_edge.net import ConnectionManager, NetLimits

async def echo(peer_id, body):
    return body

async def main():
    manager = ConnectionManager(Identity.generate(), bytes.fromhex(sys.argv[1]),
                                listen=("127.0.0.1", 0), limits=NetLimits(send_queue=4096))
    manager.on_rpc("echo", echo, inline=True)
    async with trio.open_nursery() as nursery:
        print(await nursery.start(manager.run), flush=True)
trio.run(main)
"""


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _plain_echo(port: int, count: int) -> list[float]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    times = []
    for _ in range(count):
        began = time.perf_counter()
        await stream.send_all(PAYLOAD)
        got = 0
        while got < len(PAYLOAD):
            got += len(await stream.receive_some(65536))
        times.append(time.perf_counter() - began)
    await stream.aclose()
    return times


async def _connected(manager: ConnectionManager, port: int) -> tuple[bytes, float]:
    """Dial the node; returns its ID and the seconds for TCP connect + handshake + hello."""
    began = time.perf_counter()
    events = manager.events.subscribe()
    manager.want(("127.0.0.1", port), Source.BOOTSTRAP)
    async for event in events:
        if isinstance(event, PeerConnected):
            return event.peer_id, time.perf_counter() - began
    raise RuntimeError("the event feed closed")


async def _our_stack(port: int, key: bytes, count: int, frames: int) -> dict[str, object]:
    manager = ConnectionManager(Identity.generate(), key, listen=("127.0.0.1", 0),
                                limits=NetLimits(send_queue=4096))
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.run)
        peer, _ = await _connected(manager, port)
        rtts = []
        for _ in range(count):
            began = time.perf_counter()
            await manager.request(peer, "echo", PAYLOAD, timeout=5)
            rtts.append(time.perf_counter() - began)
        # Throughput: 64 KiB frames the node decodes and drops (an unknown type), then an echo
        # as a barrier: frames on one connection are handled in order.
        blob = encode_envelope(DirectMessage("bench.blob", 1, bytes(64 * 1024)))
        conn = manager.connections[peer]
        began = time.perf_counter()
        for _ in range(frames):
            await conn.send(blob)
        await manager.request(peer, "echo", b"", timeout=60)
        seconds = time.perf_counter() - began
        await manager.close_all()
        nursery.cancel_scope.cancel()
    return {"rtts": rtts, "mbps": frames * len(blob) / seconds / 1e6}


async def _handshakes(port: int, key: bytes, count: int) -> list[float]:
    """Full TCP connect + Noise handshake + hello, one after another, each a new identity."""
    times = []
    for _ in range(count):
        manager = ConnectionManager(Identity.generate(), key, listen=("127.0.0.1", 0),
                                    limits=NetLimits())
        async with trio.open_nursery() as nursery:
            await nursery.start(manager.run)
            times.append((await _connected(manager, port))[1])
            await manager.close_all()
            nursery.cancel_scope.cancel()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--count", type=int, default=2000, help="round trips per run")
    parser.add_argument("--frames", type=int, default=1600, help="64 KiB frames per run")
    parser.add_argument("--handshakes", type=int, default=30, help="handshakes per run")
    args = parser.parse_args()
    results: dict[str, list[float]] = {k: [] for k in (
        "hs", "p50", "p99", "plain50", "plain99", "ratio50", "ratio99", "mbps")}
    key = secrets.token_bytes(32)
    peer = subprocess.Popen([sys.executable, "-c", ECHO_PEER, key.hex()], stdout=subprocess.PIPE,
                            text=True)
    echo = subprocess.Popen([sys.executable, "-c", ECHO_SERVER], stdout=subprocess.PIPE,
                            text=True)
    assert echo.stdout is not None and peer.stdout is not None
    echo_port, peer_port = int(echo.stdout.readline()), int(peer.stdout.readline())
    try:
        for _ in range(args.runs):
            plain = trio.run(_plain_echo, echo_port, args.count)
            ours = trio.run(_our_stack, peer_port, key, args.count, args.frames)
            hs = trio.run(_handshakes, peer_port, key, args.handshakes)
            p50, p99 = _percentile(ours["rtts"], 0.5), _percentile(ours["rtts"], 0.99)
            q50, q99 = _percentile(plain, 0.5), _percentile(plain, 0.99)
            for name, value in (("hs", statistics.median(hs)), ("p50", p50), ("p99", p99),
                                ("plain50", q50), ("plain99", q99), ("ratio50", p50 / q50),
                                ("ratio99", p99 / q99), ("mbps", ours["mbps"])):
                results[name].append(value)
    finally:
        echo.kill()
        peer.kill()
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"medians of {args.runs} runs ({args.count} round trips of 256 B each, "
          f"{args.frames} x 64 KiB frames, {args.handshakes} handshakes)")
    print(f"  connect + handshake + hello      {med['hs'] * 1000:8.2f} ms")
    print(f"  RPC round trip p50 / p99         {med['p50'] * 1e6:8.0f} / {med['p99'] * 1e6:.0f} us")
    print(f"  plain trio TCP echo p50 / p99    {med['plain50'] * 1e6:8.0f} / "
          f"{med['plain99'] * 1e6:.0f} us")
    print(f"  ratio (ours / plain) p50 / p99   {med['ratio50']:8.2f} / {med['ratio99']:.2f}")
    print(f"  one encrypted connection         {med['mbps']:8.1f} MB/s")


if __name__ == "__main__":
    main()
