"""bmuller's ``kademlia`` (asyncio over UDP, unsigned records): N nodes in this process, the
same workload as bench_dht.py's in-process run. Run by bench_dht.py in its own venv; prints one
JSON line: set and get latency percentiles in milliseconds.

    python _dht_kademlia.py NODES KEYS K SEED
"""

import asyncio
import json
import logging
import random
import sys
import time


def _pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


async def main(nodes: int, keys: int, k: int, seed: int) -> None:
    from kademlia.network import Server

    logging.disable(logging.CRITICAL)
    rng = random.Random(seed)
    servers = []
    for _ in range(nodes):  # node IDs from the seed: run i is the same every time
        server = Server(ksize=k, node_id=rng.randbytes(20))
        await server.listen(0, interface="127.0.0.1")
        servers.append(server)
    ports = [s.transport.get_extra_info("sockname")[1] for s in servers]
    for i, server in enumerate(servers[1:], start=1):
        await server.bootstrap([("127.0.0.1", ports[rng.randrange(i)])])
    for server in servers:  # a second pass: everyone knows more than its bootstrap node
        await server.bootstrap([("127.0.0.1", ports[0])])
    sets, gets, found = [], [], 0
    names = [f"key-{seed}-{i}" for i in range(keys)]
    for name in names:
        server = servers[rng.randrange(nodes)]
        began = time.perf_counter()
        await server.set(name, "v" * 64)
        sets.append((time.perf_counter() - began) * 1000)
    for name in names:
        server = servers[rng.randrange(nodes)]
        began = time.perf_counter()
        value = await server.get(name)
        gets.append((time.perf_counter() - began) * 1000)
        found += value is not None
    for server in servers:
        server.stop()
    print(json.dumps({"get_p50_ms": _pct(gets, 0.5), "get_p99_ms": _pct(gets, 0.99),
                      "set_p50_ms": _pct(sets, 0.5), "found": found / keys}))


if __name__ == "__main__":
    asyncio.run(main(*(int(a) for a in sys.argv[1:5])))
