"""Where a pub/sub message's CPU goes: the transport's cost per envelope next to the gossip layer's.

One process per node pays, for every message, one write per peer at its origin and one read at
each peer. This measures both sides of that, between two processes with the full transport
(TCP, Noise, framing, envelopes): a connection manager here sends gossip envelopes of a
256-byte body to one in a subprocess, which counts them; each side's CPU per envelope, from
``time.process_time``. Two ways: ``paced`` (``--rate`` a second, so each envelope is a write
and a read of its own, as at the origin of a message at any rate a 10-node cluster can carry;
the CPU of the pacing loop alone is taken off the sender's figure)
and ``burst`` (64 envelopes queued per scheduling round, written and read in batches). Then, in
this process and without sockets, the gossip layer's own work per message: signing and
publishing to 9 peers, and receiving a new message from its origin (router and service, up to
the subscriber's queue). Medians of ``--runs`` runs.

    python benchmarks/bench_pubsub_transport.py [--runs 5] [--count 3000] [--rate 1000]
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import statistics
import subprocess
import sys
import time

import trio

from bzzz_edge.config import load_config
from bzzz_edge.gossip import PeerConnected as RouterPeerConnected
from bzzz_edge.gossip._control import Control, encode_control
from bzzz_edge.gossip.bodies import encode_body, preferred_codec
from bzzz_edge.gossip.service import GossipService
from bzzz_edge.identity import Identity, network_id
from bzzz_edge.net import ConnectionManager, NetLimits, PeerConnected, Source
from bzzz_edge.peering import gossip_config
from bzzz_edge.wire.envelope import encode_envelope, sign_gossip

TOPIC = "bench"
RECEIVER = r"""
import sys, time, trio
from bzzz_edge.identity import Identity
from bzzz_edge.net import ConnectionManager, NetLimits
from bzzz_edge.wire.types import GOSSIP

count = 0

def on_gossip(sender, envelope):
    global count
    count += 1

async def marks(peer, body):
    return f"{time.process_time()} {count}".encode()

async def main():
    manager = ConnectionManager(Identity.generate(), bytes.fromhex(sys.argv[1]),
                                listen=("127.0.0.1", 0), limits=NetLimits(send_queue=4096))
    manager.on_envelope(GOSSIP, on_gossip)
    manager.on_rpc("marks", marks, inline=True)
    async with trio.open_nursery() as nursery:
        print(await nursery.start(manager.run), flush=True)

trio.run(main)
"""


def _body() -> bytes:
    return encode_body(os.urandom(256), max_size=65536, min_size=1 << 20,
                       codec=preferred_codec(), stats=None)


async def _transport(key: bytes, port: int, count: int, rate: float) -> dict[str, float]:
    manager = ConnectionManager(Identity.generate(), key, listen=("127.0.0.1", 0),
                                limits=NetLimits(send_queue=4096))
    out: dict[str, float] = {}
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.run)
        events = manager.events.subscribe()
        manager.want(("127.0.0.1", port), Source.BOOTSTRAP)
        async for event in events:
            if isinstance(event, PeerConnected):
                peer = event.peer_id
                break
        origin = Identity.generate()
        message = sign_gossip(origin.private_key, network_id=network_id(key), seq=1,
                              timestamp_ms=int(time.time() * 1000), topic=TOPIC, body=_body())
        payload = encode_envelope(message)
        # The pacing alone (a sleep per envelope), taken off the paced sender's figure.
        mine, began = time.process_time(), trio.current_time()
        for i in range(count):
            await trio.sleep_until(began + i / rate)
        pacing = time.process_time() - mine
        for mode in ("paced", "burst"):
            cpu0, got0 = (await manager.request(peer, "marks", b"", timeout=10)).split()
            mine, began = time.process_time(), trio.current_time()
            for i in range(count):
                if mode == "paced":
                    await trio.sleep_until(began + i / rate)
                elif i % 64 == 0:
                    await trio.sleep(0)
                manager.send(peer, payload)
            cpu1, got1 = (await manager.request(peer, "marks", b"", timeout=60)).split()
            sent_cpu = time.process_time() - mine - (pacing if mode == "paced" else 0.0)
            got = int(got1) - int(got0)
            if got != count:
                raise RuntimeError(f"{mode}: {got} of {count} envelopes arrived")
            out[f"{mode}_send_us"] = 1e6 * sent_cpu / count
            out[f"{mode}_receive_us"] = 1e6 * (float(cpu1) - float(cpu0)) / count
        out["envelope_bytes"] = len(payload)
        await manager.close_all()
        nursery.cancel_scope.cancel()
    return out


async def _gossip_layer(count: int) -> dict[str, float]:
    """The service and router per message, no sockets (sends find no connection)."""
    config = load_config(environ={}, flags={})
    key = secrets.token_bytes(32)
    me, peers = Identity.generate(), [Identity.generate() for _ in range(9)]
    manager = ConnectionManager(me, key, listen=("127.0.0.1", 0),
                                limits=NetLimits.from_settings(config.settings.network))
    service = GossipService(manager, me, network_id(key), settings=config.settings.gossip,
                            router=gossip_config(config), standard_topics=(),
                            rng=random.Random(1))
    subscription = service.subscribe(TOPIC, buffer=1_000_000)
    everyone = [p.node_id for p in peers] + [me.node_id]
    for p in peers:
        service.router.handle(RouterPeerConnected(p.node_id), trio.current_time())
        hello = Control(subscriptions=((TOPIC, True),), graft=(), prune=(), ihave=(), iwant=(),
                        neighbours=tuple(n for n in everyone if n != p.node_id))
        service._peers.add(p.node_id)  # as the connection feed would have told it
        service._on_envelope(p.node_id, encode_control(hello))
    body = _body()
    messages = [sign_gossip(peers[i % 9].private_key, network_id=network_id(key), seq=1 + i,
                            timestamp_ms=int(time.time() * 1000), topic=TOPIC, body=body)
                for i in range(count)]
    began = time.process_time()
    for m in messages:
        service._on_envelope(m.origin, m)
    receive = time.process_time() - began
    if len(subscription) != count:
        raise RuntimeError(f"{len(subscription)} of {count} delivered")
    began = time.process_time()
    for _ in range(count):
        service.publish(TOPIC, body)
    publish = time.process_time() - began
    return {"gossip_receive_us": 1e6 * receive / count,
            "gossip_publish_9_us": 1e6 * publish / count}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=1000.0)
    args = parser.parse_args()
    runs = []
    for _ in range(args.runs):
        key = secrets.token_bytes(32)
        receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, key.hex()],
                                    stdout=subprocess.PIPE, text=True)
        try:
            assert receiver.stdout is not None
            port = int(receiver.stdout.readline())
            row = trio.run(_transport, key, port, args.count, args.rate)
        finally:
            receiver.kill()
            receiver.wait()
        row.update(trio.run(_gossip_layer, args.count))
        row["load"] = os.getloadavg()[0]
        runs.append(row)
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"medians of {args.runs} runs, {args.count} envelopes of "
          f"{med['envelope_bytes']:.0f} bytes (256-byte body), load {med['load']:.1f} "
          f"on {os.cpu_count()} CPUs")
    print(f"  transport, one write/read each ({args.rate:g}/s)  send {med['paced_send_us']:6.1f} "
          f"us  receive {med['paced_receive_us']:6.1f} us per envelope")
    print(f"  transport, batched (64 a round)      send {med['burst_send_us']:6.1f} us  "
          f"receive {med['burst_receive_us']:6.1f} us per envelope")
    print(f"  gossip layer, receive (router+service)    {med['gossip_receive_us']:6.1f} us per "
          "message")
    print(f"  gossip layer, publish (sign, 9 peers)     {med['gossip_publish_9_us']:6.1f} us per "
          "message")
    per_message = 9 * (med["paced_send_us"] + med["paced_receive_us"]) \
        + 9 * med["gossip_receive_us"] + med["gossip_publish_9_us"]
    print(f"  10 nodes, one process each, one message: ~{per_message / 1000:.2f} ms of CPU "
          f"(transport {9 * (med['paced_send_us'] + med['paced_receive_us']) / 1000:.2f} ms), "
          f"a ceiling of ~{2e6 / per_message:.0f} messages/s on 2 idle cores")


if __name__ == "__main__":
    main()
