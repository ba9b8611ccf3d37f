"""The node core with peers wired back to back by hand: what it serves, what it refuses, and
what it returns to the application. No simulator, no sockets."""

from __future__ import annotations

import dataclasses
import hashlib
from collections import deque

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bzzz_edge.dht import (
    Abandoned,
    Action,
    CheckLiveness,
    Contact,
    DhtConfig,
    DhtNode,
    Discovered,
    FindNode,
    FindNodes,
    GetDone,
    GetRecords,
    Kind,
    Nodes,
    PutDone,
    PutRecord,
    Received,
    Record,
    RecordExpired,
    RecordStored,
    Send,
    SendFailed,
    Store,
    Stored,
    Values,
    Verdict,
    encode_message,
    sign_record,
)
from bzzz_edge.errors import LocalProtocolError

NET = b"test network"
CONFIG = DhtConfig(k=4, rpc_timeout=0.5, peer_rate=1.0, peer_burst=5, record_ttl=60.0,
                   replicate_interval=1000.0, republish_interval=1000.0)


def key_of(i: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"node %d" % i).digest())


def node_contact(i: int) -> Contact:
    public = key_of(i).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return Contact(hashlib.sha256(public).digest(), f"10.0.0.{i + 1}", 7947)


class Net:
    """Cores delivering to each other synchronously through their wire form."""

    def __init__(self, n: int, config: DhtConfig = CONFIG) -> None:
        self.contacts = [node_contact(i) for i in range(n)]
        self.nodes = {c.node: DhtNode(c, network_id=NET, now=0.0, config=config)
                      for c in self.contacts}
        self.now = 0.0
        self.dropped: set[bytes] = set()  # nodes whose messages vanish (dead or silent)
        self.out: list[tuple[bytes, Action]] = []

    def core(self, i: int) -> DhtNode:
        return self.nodes[self.contacts[i].node]

    def meet_all(self) -> None:
        for core in self.nodes.values():
            for c in self.contacts:
                core.handle(Discovered(c), self.now)

    def inject(self, i: int, event: object) -> None:
        self.run([(self.contacts[i].node, a) for a in self.core(i).handle(event, self.now)])

    def run(self, actions: list[tuple[bytes, Action]]) -> None:
        queue = deque(actions)
        while queue:
            origin, action = queue.popleft()
            if not isinstance(action, Send):
                self.out.append((origin, action))
                continue
            dest = action.to.node
            if dest in self.dropped or origin in self.dropped:
                continue
            wire = msgpack.unpackb(msgpack.packb(encode_message(action.message)), raw=False)
            sender = next(c for c in self.contacts if c.node == origin)
            queue += [(dest, a) for a in self.nodes[dest].handle(Received(sender, wire), self.now)]

    def advance(self, to: float) -> None:
        self.now = to
        for node, core in self.nodes.items():
            self.run([(node, a) for a in core.tick(self.now)])

    def done(self, kind: type) -> list:
        return [a for _, a in self.out if isinstance(a, kind)]


def record(publisher: int, version: int = 1, value: bytes = b"v", key: bytes = b"\x07" * 32,
           **fields: object) -> Record:
    return sign_record(key_of(publisher), network_id=NET, kind=Kind.VALUE, key=key,
                       version=version, timestamp_ms=version, value=value, **fields)


def test_put_then_get_from_another_node() -> None:
    net = Net(6)
    net.meet_all()
    net.inject(0, PutRecord("p", record(0, value=b"hello")))
    (put,) = net.done(PutDone)
    assert put.op == "p" and put.stored == CONFIG.k
    net.inject(5, GetRecords("g", b"\x07" * 32))
    (got,) = net.done(GetDone)
    assert [r.value for r in got.records] == [b"hello"] and got.result.hops >= 1


def test_get_returns_the_highest_version_per_publisher() -> None:
    net = Net(6)
    net.meet_all()
    net.inject(0, PutRecord("p1", record(0, 1, b"one")))
    net.inject(1, PutRecord("p2", record(1, 1, b"other")))
    net.inject(0, PutRecord("p3", record(0, 2, b"two")))
    net.inject(4, GetRecords("g", b"\x07" * 32))
    (got,) = net.done(GetDone)
    assert sorted(r.value for r in got.records) == [b"other", b"two"]


def store_at(net: Net, sender: int, target: int, rec: Record, rpc: int = 1) -> Verdict:
    net.out.clear()
    actions = net.core(target).handle(Received(net.contacts[sender], Store(rpc, rec)), net.now)
    (reply,) = [a for a in actions if isinstance(a, Send)]
    assert isinstance(reply.message, Stored)
    return reply.message.verdict


@pytest.mark.parametrize("bad", ["forged", "altered", "lower", "replayed"])
def test_forged_altered_or_lower_version_records_are_refused(bad: str) -> None:
    net = Net(3)
    good = record(0, 5, b"genuine")
    assert store_at(net, 0, 2, good) is Verdict.STORED
    if bad == "forged":  # node 1 signs, claiming node 0's key
        rec = dataclasses.replace(record(1, 6, b"evil"), publisher_key=good.publisher_key)
    elif bad == "altered":
        rec = dataclasses.replace(good, version=6, value=b"evil")
    elif bad == "lower":
        rec = record(0, 4, b"older")
    else:
        rec = dataclasses.replace(good, value=b"evil")
    expected = Verdict.INVALID if bad in ("forged", "altered") else Verdict.STALE_VERSION
    assert store_at(net, 1, 2, rec, rpc=2) is expected
    assert [r.value for r in net.core(2).store.get(Kind.VALUE, good.key)] == [b"genuine"]


def test_a_flood_of_stores_from_one_peer_is_limited() -> None:
    net = Net(3)
    verdicts = [store_at(net, 1, 2, record(1, v, key=bytes([v]) * 32), rpc=v)
                for v in range(1, 21)]
    assert verdicts[: CONFIG.peer_burst] == [Verdict.STORED] * CONFIG.peer_burst
    assert set(verdicts[CONFIG.peer_burst:]) == {Verdict.RATE_LIMITED}
    assert len(net.core(2).store) == CONFIG.peer_burst
    assert store_at(net, 0, 2, record(0), rpc=99) is Verdict.STORED  # others still served


def test_a_get_drops_altered_records_from_a_lying_responder() -> None:
    net = Net(2)
    liar, asker = net.contacts[1], net.core(0)
    asker.handle(Discovered(liar), 0.0)
    actions = asker.handle(GetRecords("g", b"\x07" * 32), 0.0)
    (query,) = [a for a in actions if isinstance(a, Send)]
    altered = dataclasses.replace(record(1, 1, b"x"), value=b"y")
    wrong_key = record(1, 1, b"z", key=b"\x08" * 32)
    reply = Values(query.message.rpc, (altered, wrong_key), ())
    out = asker.handle(Received(liar, encode_message(reply)), 0.1)
    (got,) = [a for a in out if isinstance(a, GetDone)]
    assert got.records == ()
    assert asker.counters["bad_records"] == 2


def test_malformed_and_unexpected_messages_are_counted_never_raised() -> None:
    net = Net(2)
    core, peer = net.core(0), net.contacts[1]
    for junk in (None, [1], [4, 1, "x"], [3, 1, [1, 2, 3]], b"\x00"):
        assert core.handle(Received(peer, junk), 0.0) == []
    assert core.counters["malformed"] == 5
    assert core.handle(Received(peer, encode_message(Nodes(12345, ()))), 0.0) == []
    assert core.counters["unexpected_replies"] == 1


def test_a_silent_peer_times_out_and_is_checked_then_replaced() -> None:
    net = Net(3)
    core = net.core(0)
    core.handle(Discovered(net.contacts[1]), 0.0)
    net.dropped.add(net.contacts[1].node)
    net.inject(0, FindNodes("f", b"\x01" * 32))
    assert core.pending_rpcs == 1 and core.next_deadline() == pytest.approx(0.5)
    net.advance(0.5)
    checks = [a for _, a in net.out if isinstance(a, CheckLiveness)]
    assert [c.contact for c in checks] == [net.contacts[1]]
    assert net.contacts[1].node in core.table  # only the check's outcome removes it


def test_send_failed_fails_the_rpc_at_once() -> None:
    net = Net(2)
    core = net.core(0)
    core.handle(Discovered(net.contacts[1]), 0.0)
    (send,) = [a for a in core.handle(FindNodes("f", b"\x01" * 32), 0.0) if isinstance(a, Send)]
    assert isinstance(send.message, FindNode)
    out = core.handle(SendFailed(net.contacts[1].node, send.message.rpc), 0.01)
    assert core.pending_rpcs == 0
    assert any(a.op == "f" for a in out if hasattr(a, "op"))


def test_an_abandoned_rpc_is_forgotten_without_blaming_the_peer() -> None:
    net = Net(3)
    core = net.core(0)
    for i in (1, 2):
        core.handle(Discovered(net.contacts[i]), 0.0)
    sends = [a for a in core.handle(FindNodes("f", b"\x01" * 32), 0.0) if isinstance(a, Send)]
    assert len(sends) == 2
    first, second = sends
    out = core.handle(Abandoned(first.to.node, first.message.rpc), 0.01)
    assert core.pending_rpcs == 1 and not [a for a in out if isinstance(a, CheckLiveness)]
    # The lookup moved on without it: the other one failing ends it.
    out = core.handle(SendFailed(second.to.node, second.message.rpc), 0.02)
    assert [a for a in out if isinstance(a, CheckLiveness)] == [CheckLiveness(second.to)]
    assert core.pending_rpcs == 0 and any(getattr(a, "op", None) == "f" for a in out)
    assert not [a for _, a in net.out if isinstance(a, CheckLiveness)]
    core.tick(10.0)  # its timeout is gone with it: nothing counted later
    assert core.counters["rpc_timeouts"] == 0


def test_records_expire_and_the_shell_hears_of_it() -> None:
    net = Net(2)
    assert store_at(net, 1, 0, record(1)) is Verdict.STORED
    net.advance(CONFIG.record_ttl)
    assert [a.record.version for _, a in net.out if isinstance(a, RecordExpired)] == [1]
    assert len(net.core(0).store) == 0


def test_stored_records_are_handed_to_the_shell_once() -> None:
    net = Net(2)
    core = net.core(0)
    first = core.handle(Received(net.contacts[1], Store(1, record(1))), 0.0)
    again = core.handle(Received(net.contacts[1], Store(2, record(1))), 0.0)
    assert sum(isinstance(a, RecordStored) for a in first) == 1
    assert not any(isinstance(a, RecordStored) for a in again)


def test_publishing_someone_elses_record_or_reusing_an_op_is_our_bug() -> None:
    net = Net(2)
    with pytest.raises(LocalProtocolError):
        net.core(0).handle(PutRecord("p", record(1)), 0.0)
    net.core(0).handle(Discovered(net.contacts[1]), 0.0)
    net.core(0).handle(FindNodes("f", b"\x01" * 32), 0.0)
    with pytest.raises(LocalProtocolError):
        net.core(0).handle(FindNodes("f", b"\x01" * 32), 0.0)


def test_operations_beyond_the_limit_end_at_once() -> None:
    config = dataclasses.replace(CONFIG, max_operations=2)
    core = DhtNode(node_contact(0), network_id=NET, now=0.0, config=config)
    core.handle(Discovered(node_contact(1)), 0.0)
    for op in ("a", "b"):
        core.handle(FindNodes(op, b"\x01" * 32), 0.0)
    out = core.handle(FindNodes("c", b"\x01" * 32), 0.0)
    assert [a.op for a in out if hasattr(a, "op")] == ["c"]
    assert core.counters["operations_refused"] == 1 and core.operations == 2


def test_provider_announcements_are_found_apart_from_values() -> None:
    net = Net(6)
    net.meet_all()
    provider = sign_record(key_of(2), network_id=NET, kind=Kind.PROVIDER, key=b"\x07" * 32,
                           version=1, timestamp_ms=1, content_hash=b"\x09" * 32)
    net.inject(2, PutRecord("announce", provider))
    net.inject(0, PutRecord("value", record(0, value=b"small")))
    net.inject(5, GetRecords("providers", b"\x07" * 32, Kind.PROVIDER))
    net.inject(4, GetRecords("values", b"\x07" * 32, Kind.VALUE))
    got = {a.op: a for a in net.done(GetDone)}
    assert [r.publisher for r in got["providers"].records] == [net.contacts[2].node]
    assert got["providers"].records[0].content_hash == b"\x09" * 32
    assert [r.value for r in got["values"].records] == [b"small"]


def test_an_untouched_bucket_is_refreshed_by_a_lookup() -> None:
    config = dataclasses.replace(CONFIG, refresh_interval=100.0)
    core = DhtNode(node_contact(0), network_id=NET, now=0.0, config=config)
    core.handle(Discovered(node_contact(1)), 0.0)
    assert core.next_deadline() == pytest.approx(100.0)
    sends = [a for a in core.tick(100.0) if isinstance(a, Send)]
    assert sends and all(isinstance(s.message, FindNode) for s in sends)
    assert core.operations >= 1


def test_the_publisher_republishes_so_its_record_outlives_the_ttl() -> None:
    config = dataclasses.replace(CONFIG, record_ttl=60.0, republish_interval=30.0,
                                 peer_rate=100.0)
    net = Net(6, config)
    net.meet_all()
    net.inject(0, PutRecord("p", record(0, value=b"kept")))
    holders = [i for i in range(1, 6) if len(net.core(i).store)]
    assert len(holders) >= 3
    for step in range(1, 7):
        net.advance(15.0 * step)
    assert all(len(net.core(i).store) == 1 for i in holders)
    assert not [a for _, a in net.out if isinstance(a, RecordExpired)]


def test_a_new_version_does_not_add_a_second_republishing_schedule() -> None:
    config = dataclasses.replace(CONFIG, republish_interval=30.0, peer_burst=100)
    net = Net(4, config)
    net.meet_all()
    for version in (1, 2, 3):
        net.inject(0, PutRecord(f"p{version}", record(0, version, b"v%d" % version)))

    def restores() -> int:  # STOREs of a record a holder already had: republishing
        return sum(net.core(i).counters["store_refreshed"] for i in range(1, 4))

    assert restores() == 0
    net.advance(30.0)
    assert restores() == 3  # one round to the three other holders, not one per version
    net.advance(45.0)
    assert restores() == 3
    net.advance(60.0)
    assert restores() == 6


def _held() -> tuple[Net, Record, int]:
    """Six nodes, node 0's record stored, and one of the other nodes that holds it."""
    net = Net(6)
    net.meet_all()
    rec = record(0, value=b"held")
    net.inject(0, PutRecord("p", rec))
    holder = next(i for i in range(1, 6) if net.core(i).store.get(Kind.VALUE, rec.key))
    return net, rec, holder


def test_a_get_on_a_node_holding_the_record_is_answered_from_its_store() -> None:
    net, rec, holder = _held()
    actions = net.core(holder).handle(GetRecords("g", rec.key), net.now)
    assert not [a for a in actions if isinstance(a, Send)]
    (got,) = [a for a in actions if isinstance(a, GetDone)]
    assert got.records == (rec,) and net.core(holder).counters["gets_held"] == 1


def test_a_lookup_get_on_a_node_holding_the_record_asks_the_network_all_the_same() -> None:
    net, rec, holder = _held()
    net.inject(holder, GetRecords("g", rec.key, lookup=True))
    (got,) = net.done(GetDone)
    assert got.records == (rec,)
    assert got.result.queried >= 1 and got.result.answered >= 1 and got.result.hops >= 1
    assert net.core(holder).counters["gets_held"] == 0


def test_a_get_asks_the_nearest_node_alone_and_its_records_come_without_contacts() -> None:
    net = Net(6)
    net.meet_all()
    rec = record(0, value=b"near")
    net.inject(0, PutRecord("p", rec))
    asker = next(i for i in range(1, 6) if not net.core(i).store.get(Kind.VALUE, rec.key))
    actions = net.core(asker).handle(GetRecords("g", rec.key), net.now)
    (query,) = [a for a in actions if isinstance(a, Send)]
    nearest = min((c for c in net.contacts if c != net.contacts[asker]),
                  key=lambda c: int.from_bytes(c.node, "big") ^ int.from_bytes(rec.key, "big"))
    assert query.to == nearest
    (reply,) = [a for a in net.nodes[nearest.node].handle(Received(net.contacts[asker],
                                                                   query.message), net.now)
                if isinstance(a, Send)]
    assert isinstance(reply.message, Values)
    assert reply.message.records == (rec,) and reply.message.contacts == ()
    out = net.core(asker).handle(Received(nearest, encode_message(reply.message)), net.now)
    (got,) = [a for a in out if isinstance(a, GetDone)]
    assert got.records == (rec,) and got.result.queried == 1
