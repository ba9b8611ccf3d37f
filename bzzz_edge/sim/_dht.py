"""Kademlia cores in the simulator: the wiring, and a cluster harness for tests and benchmarks.

No I/O. Messages cross the simulated network in their wire form (msgpack of ``encode_message``),
so the strict decoder runs on every message. Node IDs are real: each simulated node has an
Ed25519 key derived from its index, and its ID is the SHA-256 of the public key, so the
records it publishes verify as they would in a real network.

Liveness checks the cores ask for are answered as membership would answer them: after
``check_delay`` seconds, with whether the node is running; and a killed node is announced
``Departed`` to every node after that delay, as membership spreads a death. The simulator's
membership harness shows separately how fast and how accurately membership detects deaths;
here only the DHT's use of the verdicts is under test.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable
from typing import Any

import msgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bzzz_edge.dht import (
    Action,
    CheckLiveness,
    Contact,
    Departed,
    DhtConfig,
    DhtNode,
    Discovered,
    Event,
    FindNodes,
    GetDone,
    GetRecords,
    Kind,
    LivenessResult,
    LookupDone,
    PutDone,
    PutRecord,
    Received,
    Record,
    Send,
    encode_message,
    sign_record,
)
from bzzz_edge.sim._protocols import Outgoing
from bzzz_edge.sim._simulator import NetworkConfig, Simulator

__all__ = ["SIM_NETWORK_ID", "DhtCluster", "DhtWiring", "sim_dht_key"]

SIM_NETWORK_ID = b"bzzz-edge sim network"
_Done = LookupDone | GetDone | PutDone


def sim_dht_key(index: int) -> Ed25519PrivateKey:
    """The Ed25519 key of simulated DHT node ``index`` (its ID is SHA-256 of the public key)."""
    return Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(b"bzzz-edge sim dht key %d" % index).digest())


class DhtWiring:
    """Maps ``Send`` actions to simulated messages and back; ``directory`` names contacts."""

    def __init__(self, directory: dict[bytes, Contact], *, encode: bool = True) -> None:
        self._directory = directory
        self._encode = encode

    def outgoing(self, action: Action) -> Outgoing | None:
        if not isinstance(action, Send):
            return None
        if self._encode:
            return Outgoing(action.to.node,
                            msgpack.packb(encode_message(action.message), use_bin_type=True))
        return Outgoing(action.to.node, action.message)

    def incoming(self, sender: bytes, payload: object) -> Event:
        if self._encode:
            assert isinstance(payload, bytes)
            payload = msgpack.unpackb(payload, raw=False, strict_map_key=True)
        return Received(self._directory[sender], payload)

    def connection_lost(self, peer: bytes) -> Event | None:
        return None


class DhtCluster:
    """``n`` simulated DHT nodes with one configuration.

    Every node starts knowing ``bootstrap`` nodes started before it (sparse bootstrap) and
    looks itself up. Application requests go in through ``find``, ``get`` and ``put``; their
    outcomes land in ``done`` by operation ID.
    """

    def __init__(self, n: int, *, seed: int = 0, config: DhtConfig | None = None,
                 network: NetworkConfig | None = None, bootstrap: int = 3,
                 check_delay: float = 0.5, encode: bool = True) -> None:
        self.config = config if config is not None else DhtConfig(k=8, rpc_timeout=0.2)
        self.keys = [sim_dht_key(i) for i in range(n)]
        publics = [k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw) for k in self.keys]
        self.ids = [hashlib.sha256(p).digest() for p in publics]
        self.index = {node: i for i, node in enumerate(self.ids)}
        self.contacts = [Contact(node, f"10.{i // 250}.{i % 250}.1", 7947)
                         for i, node in enumerate(self.ids)]
        directory = dict(zip(self.ids, self.contacts, strict=True))
        self.sim: Simulator[Event, Action] = Simulator(DhtWiring(directory, encode=encode),
                                                       seed=seed, network=network)
        self.rng = self.sim.derive_rng()
        self.bootstrap = bootstrap
        self.check_delay = check_delay
        self.done: dict[Hashable, _Done] = {}
        self.checks = 0
        self._ops = 0
        self.sim.observe(self._observe)

    def _observe(self, node: bytes, action: Action, now: float) -> None:
        if isinstance(action, LookupDone | GetDone | PutDone):
            self.done[action.op] = action
        elif isinstance(action, CheckLiveness):
            self.checks += 1
            target = action.contact.node
            alive = self.sim.is_running(target)
            self.sim.inject(node, LivenessResult(target, alive), at=now + self.check_delay)

    def _new_core(self, index: int) -> DhtNode:
        return DhtNode(self.contacts[index], network_id=SIM_NETWORK_ID, now=self.sim.now,
                       config=self.config, rng=self.sim.derive_rng())

    def core(self, index: int) -> DhtNode:
        core = self.sim.core(self.ids[index])
        assert isinstance(core, DhtNode)
        return core

    def running(self) -> list[int]:
        return [i for i, node in enumerate(self.ids) if self.sim.is_running(node)]

    def _join(self, index: int, known: list[int], at: float) -> None:
        node = self.ids[index]
        for other in self.rng.sample(known, min(self.bootstrap, len(known))):
            self.sim.inject(node, Discovered(self.contacts[other]), at=at)
        self.sim.inject(node, FindNodes(("join", index, at), node), at=at)

    def start(self, *, spread: float = 1.0, settle: float = 2.0) -> None:
        """Start every node over ``spread`` seconds, in index order, then run ``settle``."""
        now = self.sim.now
        n = len(self.ids)
        for index in range(n):
            self.sim.add_node(self.ids[index], self._new_core(index))
            if index:
                self._join(index, list(range(index)), now + spread * index / n)
        self.sim.run_for(spread + settle)

    def kill(self, index: int, *, announce: bool = True) -> None:
        """Kill node ``index``; with ``announce``, every running node hears ``Departed`` after
        ``check_delay``, as membership would tell it."""
        node = self.ids[index]
        self.sim.kill(node)
        if announce:
            at = self.sim.now + self.check_delay
            for other in self.running():
                self.sim.inject(self.ids[other], Departed(node), at=at)

    def restart(self, index: int) -> None:
        """Bring node ``index`` back empty (a new process without its disk) and join."""
        self.sim.restart(self.ids[index], self._new_core(index))
        self._join(index, [i for i in self.running() if i != index], self.sim.now)

    def _op(self, kind: str) -> tuple[str, int]:
        self._ops += 1
        return kind, self._ops

    def _wait(self, op: Hashable, timeout: float) -> _Done | None:
        self.sim.run_until_true(lambda: op in self.done, timeout=timeout, every=0.005)
        return self.done.get(op)

    def find(self, index: int, target: bytes, *, timeout: float = 30.0) -> LookupDone | None:
        op = self._op("find")
        self.sim.inject(self.ids[index], FindNodes(op, target))
        done = self._wait(op, timeout)
        assert done is None or isinstance(done, LookupDone)
        return done

    def get(self, index: int, key: bytes, kind: Kind = Kind.VALUE, *,
            timeout: float = 30.0) -> GetDone | None:
        op = self._op("get")
        self.sim.inject(self.ids[index], GetRecords(op, key, kind))
        done = self._wait(op, timeout)
        assert done is None or isinstance(done, GetDone)
        return done

    def record(self, index: int, key: bytes, value: bytes, *, version: int = 1,
               **fields: Any) -> Record:
        """A value record published by node ``index``."""
        return sign_record(self.keys[index], network_id=SIM_NETWORK_ID, kind=Kind.VALUE,
                           key=key, version=version, timestamp_ms=int(self.sim.now * 1000),
                           value=value, **fields)

    def put(self, index: int, record: Record, *, timeout: float = 30.0) -> PutDone | None:
        op = self._op("put")
        self.sim.inject(self.ids[index], PutRecord(op, record))
        done = self._wait(op, timeout)
        assert done is None or isinstance(done, PutDone)
        return done

    def holders(self, key: bytes) -> list[int]:
        """Running nodes holding a value record under ``key``."""
        return [i for i in self.running() if self.core(i).store.get(Kind.VALUE, key)]
