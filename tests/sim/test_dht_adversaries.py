"""Kademlia cores in the simulator with hostile and slow members: lookups and gets still
succeed, and none runs past its deadline."""

from __future__ import annotations

import hashlib
import random

from bzzz_edge.dht import (
    Action,
    Contact,
    DhtConfig,
    DhtNode,
    Event,
    FindNode,
    FindValue,
    Nodes,
    Received,
    Send,
    Values,
    decode_message,
)
from bzzz_edge.sim import DhtCluster, NetworkConfig

CONFIG = DhtConfig(k=8, rpc_timeout=0.2, lookup_deadline=3.0)


class Liar(DhtNode):
    """Answers every query with phantoms nearer the target than anyone real."""

    def handle(self, event: Event, now: float) -> list[Action]:
        if isinstance(event, Received):
            message = decode_message(event.payload)
            if isinstance(message, FindNode | FindValue):
                target = message.target if isinstance(message, FindNode) else message.key
                goal = int.from_bytes(target, "big")
                rng = random.Random(now)
                phantoms = tuple(Contact((goal ^ rng.getrandbits(180)).to_bytes(32, "big"),
                                         "10.99.0.1", 7947) for _ in range(CONFIG.k))
                reply = (Nodes(message.rpc, phantoms) if isinstance(message, FindNode)
                         else Values(message.rpc, (), phantoms))
                return [Send(event.sender, reply)]
        return super().handle(event, now)


class Sloth(DhtNode):
    """Never answers: a peer slower than any RPC timeout, holding its slots in every lookup."""

    def handle(self, event: Event, now: float) -> list[Action]:
        return [] if isinstance(event, Received) else super().handle(event, now)


def test_lookups_and_gets_succeed_with_10_percent_liars_and_10_percent_sloths() -> None:
    c = DhtCluster(200, seed=9, config=CONFIG,
                   network=NetworkConfig(latency=0.002, jitter=0.002, loss=0.05))
    c.start(spread=1.0, settle=2.0)
    key = hashlib.sha256(b"precious").digest()
    done = c.put(0, c.record(0, key, b"precious"))
    assert done is not None and done.stored >= 6
    hostile = c.rng.sample(range(1, 200), 40)
    for i, index in enumerate(hostile):  # swap their cores for hostile ones, same identity
        c.sim.kill(c.ids[index])
        kind = Liar if i % 2 else Sloth
        c.sim.restart(c.ids[index], kind(c.contacts[index], network_id=b"bzzz-edge sim network",
                                          now=c.sim.now, config=CONFIG, rng=random.Random(i)))
    honest = [i for i in range(200) if i not in hostile]
    found = 0
    for _ in range(30):
        source, target = c.rng.sample(honest, 2)
        started = c.sim.now
        result = c.find(source, c.ids[target])
        assert result is not None
        assert c.sim.now - started <= CONFIG.lookup_deadline + 0.01
        found += c.ids[target] in [x.node for x in result.result.closest]
    assert found >= 27
    for _ in range(10):
        got = c.get(c.rng.choice(honest), key)
        assert got is not None and [r.value for r in got.records] == [b"precious"]
