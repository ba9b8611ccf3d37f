"""py-libp2p gossipsub under the pub/sub benchmark's workload, all nodes in this process.

Run by bench_pubsub.py with the python of a virtual environment holding ``libp2p==0.8.1``:

    python _pubsub_libp2p.py NODES SCHEDULE_JSON

N hosts on 127.0.0.1 (TCP, Noise, the default muxer), each with a gossipsub router (D=6,
low 4, high 12 as ours; heartbeat 1 s; its per-peer spam limit off), fully connected, all
subscribed to one topic. Prints one JSON object: the per-step summary (see _pubsub_workload),
the CPU seconds of the process per step and the set-up time.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service

sys.path.insert(0, str(Path(__file__).parent))
import _pubsub_workload as workload

TOPIC = "bench"


async def _node(index: int, ready: list, stop: trio.Event, *, task_status) -> None:
    host = new_host(key_pair=create_new_key_pair())
    router = GossipSub(protocols=[TProtocol("/meshsub/1.0.0")], degree=6, degree_low=4,
                       degree_high=12, heartbeat_interval=1, heartbeat_initial_delay=0.1,
                       spam_protection_enabled=False)
    pubsub = Pubsub(host, router)
    listen = multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")
    async with host.run(listen_addrs=[listen]), background_trio_service(pubsub), \
            background_trio_service(router):
        await pubsub.wait_until_ready()
        subscription = await pubsub.subscribe(TOPIC)
        address = f"{host.get_addrs()[0]}"
        if "/p2p/" not in address:
            address += f"/p2p/{host.get_id().to_string()}"
        ready[index] = (host, pubsub, router, subscription, address)
        task_status.started()
        await stop.wait()


async def main(nodes: int, schedule: list[list[float]]) -> dict:
    began = time.monotonic()
    ready: list = [None] * nodes
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        for index in range(nodes):
            await nursery.start(_node, index, ready, stop)
        for i in range(nodes):
            for j in range(i):
                await ready[i][0].connect(info_from_p2p_addr(multiaddr.Multiaddr(ready[j][4])))
        with trio.fail_after(60):
            while any(len(r[2].mesh.get(TOPIC, ())) < min(nodes - 1, 4) for r in ready):
                await trio.sleep(0.1)
        setup = time.monotonic() - began
        ids = [r[0].get_id().to_bytes() for r in ready]
        received: list[list[tuple[int, int, int]]] = [[] for _ in range(nodes)]

        async def receive(index: int) -> None:
            subscription = ready[index][3]
            while True:
                message = await subscription.get()
                at = time.time_ns()
                if message.from_id != ids[index]:
                    step, k, _ = workload.parse(message.data)
                    received[index].append((step, k, at))

        for index in range(nodes):
            nursery.start_soon(receive, index)
        published: dict[tuple[int, int], int] = {}
        cpu: list[float] = []
        start = time.time() + 1.0
        async with trio.open_nursery() as publishers:
            for index in range(nodes):
                pubsub = ready[index][1]

                async def publish(data: bytes, pubsub=pubsub) -> None:
                    await pubsub.publish(TOPIC, data)

                publishers.start_soon(workload.publish_share, publish, index, nodes, schedule,
                                      start, published, cpu if index == 0 else None)
        await trio.sleep(2.0)  # the last step's stragglers
        steps = workload.summarize(schedule, nodes, published, received)
        for n, row in enumerate(steps):
            row["cpu_s"] = cpu[2 * n + 1] - cpu[2 * n]
        stop.set()
        nursery.cancel_scope.cancel()
    return {"setup_s": setup, "steps": steps}


if __name__ == "__main__":
    result = trio.run(main, int(sys.argv[1]), json.loads(sys.argv[2]))
    print(json.dumps(result), flush=True)
