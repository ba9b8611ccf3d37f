"""One real node for bench_pubsub.py's one-process-per-node run, driven over stdin/stdout.

    python _pubsub_worker.py INDEX NODES [bzzz-edge run options...]

Runs ``bzzz-edge run`` in-process (the full node: transport, membership, pub/sub, HTTP API)
plus the benchmark's own subscriber and publisher on the topic ``bench``. Lines it prints:
``ready PORT`` (the peer port), ``meshed`` (answer to ``mesh``: every other node connected and
subscribed), ``result JSON`` (answer to ``run START SCHEDULE_JSON``: what it published and
delivered, CPU marks and the router's counters of the topic). ``quit`` stops the node.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import trio

from bzzz_edge.cli import _config_from, _parser
from bzzz_edge.logs import setup_logging
from bzzz_edge.node import Node

sys.path.insert(0, str(Path(__file__).parent))
import _pubsub_workload as workload

TOPIC = "bench"


async def main(index: int, nodes: int, node: Node) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(node.run)
        while node.gossip is None or not node.gossip.started.is_set() or not node.peer_port:
            await trio.sleep(0.01)
        gossip, me = node.gossip, node.identity.node_id
        received: list[tuple[int, int, int]] = []
        subscription = gossip.subscribe(TOPIC, buffer=1_000_000)

        async def receive() -> None:
            async for delivery in subscription:
                at = time.time_ns()
                if delivery.origin != me:
                    step, k, _ = workload.parse(delivery.data)
                    received.append((step, k, at))

        nursery.start_soon(receive)
        print(f"ready {node.peer_port}", flush=True)
        stdin = trio.wrap_file(sys.stdin)
        while True:
            line = (await stdin.readline()).strip()
            if line == "mesh":
                while len(node.manager.connections) < nodes - 1 or gossip.router.topic_stats()[
                        TOPIC].subscribed_peers < nodes - 1:
                    await trio.sleep(0.05)
                print("meshed", flush=True)
            elif line.startswith("run "):
                _, start, schedule_text = line.split(" ", 2)
                schedule = json.loads(schedule_text)
                published: dict[tuple[int, int], int] = {}
                cpu: list[float] = []

                async def publish(data: bytes) -> None:
                    gossip.publish(TOPIC, data)

                received.clear()
                await workload.publish_share(publish, index, nodes, schedule, float(start),
                                             published, cpu)
                await trio.sleep(2.0)
                stats = dataclasses.asdict(gossip.router.topic_stats()[TOPIC])
                print("result " + json.dumps({
                    "published": [[s, k, t] for (s, k), t in published.items()],
                    "received": received, "cpu": cpu, "stats": stats}), flush=True)
            else:  # "quit" or end of input
                node.shutdown.request("benchmark done")
                return


if __name__ == "__main__":
    args = _parser().parse_args(["run", *sys.argv[3:]])
    config = _config_from(args)
    setup_logging(config["log.level"], config["log.format"], config.secrets())
    trio.run(main, int(sys.argv[1]), int(sys.argv[2]), Node.load(config))
