"""Transport benchmarks: handshake time, RPC round trip, throughput and CPU per message.

The round trip and throughput are measured between two processes, each with our full stack
(TCP, Noise, framing, envelopes, RPC): a connection manager in this process, and one in a
subprocess that serves an "echo" RPC (registered here, not in the node: it is a benchmark's
tool). Next
to it, in the same run, a plain trio TCP echo of the same payload between this process and a
subprocess: the ratio of the two is our stack's overhead. Medians of --runs runs.

CPU per message (``--only cpu``, also in the default run): the CPU of each process, as each
reads its own (``time.process_time``: user and kernel, exact), over ``--messages`` gossip
envelopes of a 256-byte body sent to the subprocess, which counts them: ``paced`` at ``--rate``
a second (each envelope a write and a wake-up and read of its own, as in a cluster at any rate
it can carry; the CPU of the pacing loop alone, measured first, is taken off the sender's
figure) and ``burst`` (64 envelopes a scheduling round, written and read several at a time);
and per RPC round trip of 256 bytes, client and server. Wall-clock figures on a shared machine
are noisy; these much less: compare two trees by running this alternately with each on
PYTHONPATH.

    python benchmarks/bench_transport.py [--runs 5] [--count 2000] [--only cpu]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import time

import trio

from bzzz_edge.identity import Identity, network_id
from bzzz_edge.net import ConnectionManager, NetLimits, PeerConnected, Source
from bzzz_edge.wire.envelope import DirectMessage, encode_envelope, sign_gossip

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
import sys, time, trio
from bzzz_edge.identity import Identity
from bzzz_edge.net import ConnectionManager, NetLimits
from bzzz_edge.wire.types import GOSSIP

received = 0

def cpu_seconds():
    return time.process_time()

async def echo(peer_id, body):
    return body

def on_gossip(peer_id, envelope):
    global received
    received += 1

async def marks(peer_id, body):
    return f"{cpu_seconds()} {received}".encode()

async def main():
    manager = ConnectionManager(Identity.generate(), bytes.fromhex(sys.argv[1]),
                                listen=("127.0.0.1", 0), limits=NetLimits(send_queue=4096))
    manager.on_rpc("echo", echo, inline=True)
    manager.on_rpc("marks", marks, inline=True)
    manager.on_envelope(GOSSIP, on_gossip)
    async with trio.open_nursery() as nursery:
        print(await nursery.start(manager.run), flush=True)
trio.run(main)
"""


def _cpu_seconds() -> float:
    """This process's CPU, all threads, user and kernel (CLOCK_PROCESS_CPUTIME_ID: exact for
    the calling process, the running time slice included, which its own schedstat is not)."""
    return time.process_time()


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


async def _marks(manager: ConnectionManager, peer: bytes) -> tuple[float, int]:
    """The peer's CPU seconds and envelopes received so far."""
    cpu, got = (await manager.request(peer, "marks", b"", timeout=60)).split()
    return float(cpu), int(got)


async def _cpu(port: int, key: bytes, messages: int, rate: float) -> dict[str, float]:
    """CPU per envelope sent and received (paced, burst) and per RPC round trip, in us."""
    manager = ConnectionManager(Identity.generate(), key, listen=("127.0.0.1", 0),
                                limits=NetLimits(send_queue=4096))
    out: dict[str, float] = {}
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.run)
        peer, _ = await _connected(manager, port)
        origin = Identity.generate()
        payload = encode_envelope(sign_gossip(
            origin.private_key, network_id=network_id(key), seq=1,
            timestamp_ms=int(time.time() * 1000), topic="bench", body=os.urandom(256)))
        mine, began = _cpu_seconds(), trio.current_time()
        for i in range(messages):  # the pacing alone, taken off the paced sender's figure
            await trio.sleep_until(began + i / rate)
        pacing = _cpu_seconds() - mine
        for mode in ("paced", "burst"):
            theirs, got = await _marks(manager, peer)
            mine, began = _cpu_seconds(), trio.current_time()
            for i in range(messages):
                if mode == "paced":
                    await trio.sleep_until(began + i / rate)
                elif i % 64 == 0:
                    await trio.sleep(0)
                manager.send(peer, payload)
            sent = _cpu_seconds() - mine - (pacing if mode == "paced" else 0.0)
            theirs_after, got_after = await _marks(manager, peer)
            if got_after - got != messages:
                raise RuntimeError(f"{mode}: {got_after - got} of {messages} envelopes arrived")
            out[f"{mode}_send"] = 1e6 * sent / messages
            out[f"{mode}_receive"] = 1e6 * (theirs_after - theirs) / messages
        body = bytes(256)
        theirs, _ = await _marks(manager, peer)
        mine = _cpu_seconds()
        for _ in range(messages):
            await manager.request(peer, "echo", body, timeout=5)
        out["rpc_client"] = 1e6 * (_cpu_seconds() - mine) / messages
        out["rpc_server"] = 1e6 * ((await _marks(manager, peer))[0] - theirs) / messages
        await manager.close_all()
        nursery.cancel_scope.cancel()
    return out


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
    parser.add_argument("--messages", type=int, default=3000,
                        help="envelopes (and RPCs) per run for the CPU figures")
    parser.add_argument("--rate", type=float, default=1000.0, help="paced envelopes a second")
    parser.add_argument("--only", choices=["latency", "cpu"],
                        help="latency: handshake, round trip, throughput; cpu: CPU per message")
    args = parser.parse_args()
    results: dict[str, list[float]] = {}
    key = secrets.token_bytes(32)
    peer = subprocess.Popen([sys.executable, "-c", ECHO_PEER, key.hex()], stdout=subprocess.PIPE,
                            text=True)
    echo = subprocess.Popen([sys.executable, "-c", ECHO_SERVER], stdout=subprocess.PIPE,
                            text=True)
    assert echo.stdout is not None and peer.stdout is not None
    echo_port, peer_port = int(echo.stdout.readline()), int(peer.stdout.readline())
    loads = []
    try:
        for _ in range(args.runs):
            loads.append(os.getloadavg()[0])
            row: dict[str, float] = {}
            if args.only != "cpu":
                plain = trio.run(_plain_echo, echo_port, args.count)
                ours = trio.run(_our_stack, peer_port, key, args.count, args.frames)
                hs = trio.run(_handshakes, peer_port, key, args.handshakes)
                p50, p99 = _percentile(ours["rtts"], 0.5), _percentile(ours["rtts"], 0.99)
                q50, q99 = _percentile(plain, 0.5), _percentile(plain, 0.99)
                row.update(hs=statistics.median(hs), p50=p50, p99=p99, plain50=q50, plain99=q99,
                           ratio50=p50 / q50, ratio99=p99 / q99, mbps=ours["mbps"])
            if args.only != "latency":
                row.update(trio.run(_cpu, peer_port, key, args.messages, args.rate))
            for name, value in row.items():
                results.setdefault(name, []).append(value)
    finally:
        echo.kill()
        peer.kill()
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"medians of {args.runs} runs, load {min(loads):.1f} to {max(loads):.1f} on "
          f"{os.cpu_count()} CPUs")
    if "hs" in med:
        print(f"  ({args.count} round trips of 256 B each, {args.frames} x 64 KiB frames, "
              f"{args.handshakes} handshakes)")
        print(f"  connect + handshake + hello      {med['hs'] * 1000:8.2f} ms")
        print(f"  RPC round trip p50 / p99         {med['p50'] * 1e6:8.0f} / "
              f"{med['p99'] * 1e6:.0f} us")
        print(f"  plain trio TCP echo p50 / p99    {med['plain50'] * 1e6:8.0f} / "
              f"{med['plain99'] * 1e6:.0f} us")
        print(f"  ratio (ours / plain) p50 / p99   {med['ratio50']:8.2f} / {med['ratio99']:.2f}")
        print(f"  one encrypted connection         {med['mbps']:8.1f} MB/s")
    if "paced_send" in med:
        print(f"  CPU per envelope ({args.messages} of 256-byte body; user + kernel):")
        print(f"    paced, {args.rate:g}/s                 send {med['paced_send']:6.1f} us  "
              f"receive {med['paced_receive']:6.1f} us")
        print(f"    burst, 64 a round              send {med['burst_send']:6.1f} us  "
              f"receive {med['burst_receive']:6.1f} us")
        print(f"  CPU per RPC round trip (256 B)   client {med['rpc_client']:5.1f} us  "
              f"server {med['rpc_server']:6.1f} us")


if __name__ == "__main__":
    main()
