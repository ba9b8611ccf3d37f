"""Pub/sub router cores in the deterministic simulator: copies, hops and time per delivery.

For each network size N it starts N routers (``lan()`` profile; links 2 ms +- 3 ms; a ring plus
three random links per node, so about eight links a node: a sparse network; N=10 is also run
fully connected, the home-lab case), subscribes every node to one topic, lets meshes form, then
publishes ``--messages`` messages from random origins, 50 ms apart, and runs until every live
node has every message (or 10 virtual seconds). Reported, as medians over ``--runs`` seeds:

- delivered: the share of (message, live subscriber) pairs delivered (must be 100%);
- copies/delivery: gossip messages sent per remote delivery (1.0 would be a perfect tree);
- control/delivery: control messages (subscriptions, GRAFT/PRUNE, IHAVE/IWANT) per delivery,
  heartbeat traffic over the measured period included;
- hops: mean and maximum links crossed per delivery, and the mean over log2(N), which stays
  flat when hops grow like log N;
- t_all: virtual seconds from publication until the last subscriber had it (p50 and max);
- wall: real seconds per run (the simulator's own cost).

``--router-cost`` measures instead the router's own CPU per message, outside the simulator: one
router with nine connected peers handling 256-byte messages that arrive from their origins (no
signature check, as over the origin's own connection), and relayed ones (one check each), and
publishing (a send to each of the nine); medians of ``--runs`` runs, microseconds per message.

Run: .venv/bin/python benchmarks/bench_pubsub_sim.py [--quick] [--sizes 10,100,1000]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time
from dataclasses import dataclass

from bzzz_edge.sim import NetworkConfig, PubsubCluster


@dataclass
class Run:
    delivered: float
    copies: float
    control: float
    hops_mean: float
    hops_max: int
    t_all_p50: float
    t_all_max: float
    wall: float


def one_run(n: int, seed: int, *, loss: float, messages: int, full: bool) -> Run:
    started = time.perf_counter()
    network = NetworkConfig(latency=0.002, jitter=0.003, loss=loss)
    cluster = PubsubCluster(n, seed=seed, network=network, encode=n <= 100,
                            extra_links=n - 1 if full else 3)
    cluster.start()
    cluster.sim.run_for(1.0)
    counts_before = dict(cluster.wiring.counts)
    rng = random.Random(seed)
    published = []
    for _ in range(messages):
        published.append((cluster.sim.now, cluster.publish(rng.randrange(n))))
        cluster.sim.run_for(0.05)
    cluster.sim.run_until_true(lambda: cluster.all_delivered([m for _, m in published]),
                               timeout=10.0, every=0.05)
    remote = [d for d in cluster.deliveries if d.hops > 0]
    wanted = sum(len(cluster.expected(m)) - 1 for _, m in published)
    t_all = []
    for at, m in published:
        times = [d.at for d in remote if d.origin == m.origin and d.seq == m.seq]
        t_all.append(max(times) - at if times else math.inf)
    gossip = cluster.wiring.counts["gossip"] - counts_before.get("gossip", 0)
    control = cluster.wiring.counts["control"] - counts_before.get("control", 0)
    hops = [d.hops for d in remote]
    return Run(
        delivered=len(remote) / wanted, copies=gossip / len(remote), control=control / len(remote),
        hops_mean=statistics.mean(hops), hops_max=max(hops), t_all_p50=statistics.median(t_all),
        t_all_max=max(t_all), wall=time.perf_counter() - started)


def report(label: str, n: int, runs: list[Run]) -> None:
    def med(field: str) -> float:
        return statistics.median(getattr(r, field) for r in runs)

    print(f"{label:<22} {100 * med('delivered'):7.2f}% {med('copies'):7.2f} "
          f"{med('control'):8.2f} {med('hops_mean'):6.2f} {med('hops_max'):5.0f} "
          f"{med('hops_mean') / math.log2(n):7.3f} {1000 * med('t_all_p50'):8.1f} "
          f"{1000 * med('t_all_max'):8.1f} {med('wall'):7.2f}")


def router_cost(runs: int) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from bzzz_edge.gossip import PeerConnected, Publish, Received, Router, Subscribe, lan
    from bzzz_edge.sim._pubsub import NETWORK_ID, WALL_OFFSET
    from bzzz_edge.wire.envelope import sign_gossip

    keys = [Ed25519PrivateKey.from_private_bytes(bytes([i + 1]) * 32) for i in range(10)]
    ids = [sign_gossip(k, network_id=NETWORK_ID, seq=1, timestamp_ms=0, topic="t").origin
           for k in keys]
    count = 3000

    def messages(origin: int) -> list:
        return [sign_gossip(keys[origin], network_id=NETWORK_ID, seq=s + 1,
                            timestamp_ms=int(WALL_OFFSET * 1000), topic="t", body=b"x" * 256)
                for s in range(count)]

    def fresh() -> Router:
        router = Router(lan(), me=ids[0], network_id=NETWORK_ID, rng=random.Random(1), now=0.0,
                        wall_offset=WALL_OFFSET)
        router.handle(Subscribe("t"), 0.0)
        for peer in ids[1:]:
            router.handle(PeerConnected(peer), 0.0)
        return router

    cases = {"from origin": (messages(1), lambda m: Received(ids[1], m)),
             "relayed (verified)": (messages(2), lambda m: Received(ids[3], m)),
             "publish to 9 peers": (messages(0), Publish)}
    for label, (batch, make) in cases.items():
        results = []
        for _ in range(runs):
            router = fresh()
            events = [make(m) for m in batch]
            started = time.perf_counter()
            for n, event in enumerate(events):
                router.handle(event, n * 1e-4)
            results.append((time.perf_counter() - started) / count * 1e6)
        print(f"{label:<20} {statistics.median(results):7.1f} us per message")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="10,30,100,300,1000")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="3 runs, 10 messages")
    parser.add_argument("--router-cost", action="store_true", help="CPU per message instead")
    args = parser.parse_args()
    if args.router_cost:
        router_cost(args.runs)
        return
    runs, messages = (3, 10) if args.quick else (args.runs, args.messages)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"medians of {runs} runs, {messages} messages each; virtual times in ms")
    print(f"{'case':<22} {'deliv':>8} {'copies':>7} {'control':>8} {'hops':>6} {'max':>5} "
          f"{'h/log2N':>7} {'t_all50':>8} {'t_allmx':>8} {'wall_s':>7}")
    for loss in (0.0, 0.05):
        for n in sizes:
            cases = [(False, f"N={n} sparse")] + ([(True, f"N={n} full mesh")] if n <= 10 else [])
            for full, label in cases:
                results = [one_run(n, seed, loss=loss, messages=messages, full=full)
                           for seed in range(runs)]
                report(f"{label} loss {int(100 * loss)}%", n, results)


if __name__ == "__main__":
    main()
