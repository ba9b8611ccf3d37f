"""One real node for bench_pubsub.py's one-process-per-node run, driven over stdin/stdout.

    python _pubsub_worker.py INDEX NODES [bzzz-edge run options...]

Runs ``bzzz-edge run`` in-process (the full node: transport, membership, pub/sub, HTTP API)
plus the benchmark's own subscriber and publisher on the topic ``bench``. Lines it prints:
``ready PORT`` (the peer port), ``meshed`` (answer to ``mesh``: every other node connected and
subscribed), ``result JSON`` (answer to ``run START SCHEDULE_JSON``: what it published and
delivered, CPU marks and the router's counters of the topic). ``steps`` answers
``steps JSON``: how many times each task ran since the last ``steps`` (the first one starts
counting: what wakes a node, by task). ``quit`` stops the node.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections import Counter
from pathlib import Path

import trio

from bzzz_edge.cli import _config_from, _parser
from bzzz_edge.logs import setup_logging
from bzzz_edge.node import Node

sys.path.insert(0, str(Path(__file__).parent))
import _pubsub_workload as workload

TOPIC = "bench"


class _TaskSteps(trio.abc.Instrument):
    """Counts the steps each task runs, by task name: what wakes an idle node, and how often."""

    def __init__(self) -> None:
        self.steps: Counter[str] = Counter()

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps[_waiting_in(task)] += 1


def _waiting_in(task: trio.lowlevel.Task) -> str:
    """The innermost bzzz-edge coroutine ``task`` waits in (else its name): a service started
    through a wrapper is named by the wrapper, this by what it really waits for."""
    name, coro = task.name, task.coro
    while coro is not None:
        code = getattr(coro, "cr_code", None)
        if code is not None and "bzzz_edge" in code.co_filename:
            name = f"{code.co_filename.rsplit('bzzz_edge/', 1)[-1]}:{code.co_qualname}"
        coro = getattr(coro, "cr_await", None)
    return name


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
        steps: _TaskSteps | None = None
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
            elif line == "steps":
                if steps is None:
                    steps = _TaskSteps()
                    trio.lowlevel.add_instrument(steps)
                print("steps " + json.dumps(steps.steps), flush=True)
                steps.steps.clear()
            else:  # "quit" or end of input
                node.shutdown.request("benchmark done")
                return


if __name__ == "__main__":
    args = _parser().parse_args(["run", *sys.argv[3:]])
    config = _config_from(args)
    setup_logging(config["log.level"], config["log.format"], config.secrets())
    trio.run(main, int(sys.argv[1]), int(sys.argv[2]), Node.load(config))
