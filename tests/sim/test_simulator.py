"""The simulator on its own, driving a toy core: time, latency, loss, order, partitions, kills."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from bzzz_edge.errors import LocalProtocolError
from bzzz_edge.sim import NetworkConfig, Outgoing, Simulator

A, B, C = b"a" * 32, b"b" * 32, b"c" * 32


@dataclass(frozen=True)
class Out:
    to: bytes
    payload: object


@dataclass(frozen=True)
class Got:
    sender: bytes
    payload: object


class Toy:
    """Sends what it is told to; with a period, beats to its peers; reports what it receives."""

    def __init__(
        self, peers: tuple[bytes, ...] = (), period: float | None = None, start: float = 0.0
    ) -> None:
        self.peers = peers
        self.period = period
        self.next = None if period is None else start + period

    def handle(self, event: tuple, now: float) -> list[object]:
        if event[0] == "send":
            return [Out(event[1], event[2])]
        return [Got(event[1], event[2])]

    def tick(self, now: float) -> list[object]:
        assert self.next is not None and self.period is not None
        self.next += self.period
        return [Out(peer, ("beat", now)) for peer in self.peers]

    def next_deadline(self) -> float | None:
        return self.next


class ToyWiring:
    def outgoing(self, action: object) -> Outgoing | None:
        return Outgoing(action.to, action.payload) if isinstance(action, Out) else None

    def incoming(self, sender: bytes, payload: object) -> tuple:
        return ("recv", sender, payload)

    def connection_lost(self, peer: bytes) -> tuple:
        return ("lost", peer, None)


def make_sim(seed: int = 1, **network: object) -> tuple[Simulator, list[tuple[float, bytes, Got]]]:
    sim: Simulator = Simulator(ToyWiring(), seed=seed, network=NetworkConfig(**network))
    seen: list[tuple[float, bytes, Got]] = []
    sim.observe(lambda node, action, now: seen.append((now, node, action)))
    return sim, seen


def burst(sim: Simulator, src: bytes, dst: bytes, count: int) -> None:
    for i in range(count):
        sim.inject(src, ("send", dst, (i, sim.now)))


def test_same_seed_same_run_and_another_seed_another_run() -> None:
    def run(seed: int) -> list:
        sim, seen = make_sim(seed, latency=0.001, jitter=0.01, loss=0.3)
        sim.add_node(A, Toy((B, C), period=0.05))
        sim.add_node(B, Toy((A,), period=0.07))
        sim.add_node(C, Toy())
        sim.run_until(5.0)
        return seen

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_delay_is_latency_plus_bounded_jitter() -> None:
    sim, seen = make_sim(latency=0.002, jitter=0.003)
    sim.add_node(A, Toy((B,), period=0.01))
    sim.add_node(B, Toy())
    sim.run_until(2.0)
    delays = [now - got.payload[1] for now, _, got in seen]
    assert len(delays) > 150
    assert all(0.002 <= d <= 0.005 + 1e-12 for d in delays)
    assert max(delays) - min(delays) > 0.002  # jitter really varies


def test_fifo_links_keep_order_and_others_may_reorder() -> None:
    for fifo in (True, False):
        sim, seen = make_sim(latency=0.001, jitter=0.05, fifo=fifo)
        sim.add_node(A, Toy())
        sim.add_node(B, Toy())
        burst(sim, A, B, 200)
        sim.run_until(1.0)
        order = [got.payload[0] for _, _, got in seen]
        assert sorted(order) == list(range(200))
        assert (order == list(range(200))) is fifo


def test_loss_drops_about_the_configured_share_and_is_counted() -> None:
    sim, seen = make_sim(loss=0.2)
    sim.add_node(A, Toy())
    sim.add_node(B, Toy())
    burst(sim, A, B, 5000)
    sim.run_until(1.0)
    assert 0.77 < len(seen) / 5000 < 0.83
    assert sim.stats["sent"] == 5000
    assert sim.stats["delivered"] == len(seen)
    assert sim.stats["lost"] == 5000 - len(seen)


def test_a_link_can_have_its_own_latency_and_loss_one_way_or_both() -> None:
    sim, seen = make_sim(latency=0.001, jitter=0.0)
    for node in (A, B, C):
        sim.add_node(node, Toy())
    sim.set_link(A, B, NetworkConfig(latency=0.1, jitter=0.0))
    sim.set_link(A, C, NetworkConfig(loss=1.0), both_ways=False)
    burst(sim, A, B, 3)
    burst(sim, B, A, 3)
    burst(sim, A, C, 3)
    burst(sim, C, A, 3)
    sim.run_until(1.0)
    delays = {(node, got.sender): round(now - got.payload[1], 6) for now, node, got in seen}
    assert delays == {(B, A): 0.1, (A, B): 0.1, (A, C): 0.001}  # C hears nothing from A
    sim.set_link(A, B, None)
    burst(sim, A, B, 1)
    sim.run_until(2.0)
    assert round(seen[-1][0] - seen[-1][2].payload[1], 6) == 0.001


def test_partition_drops_between_groups_until_healed() -> None:
    sim, seen = make_sim()
    for node in (A, B, C):
        sim.add_node(node, Toy())
    sim.partition([[A, B]])  # C is left out: isolated
    for src, dst in ((A, B), (A, C), (C, A)):
        sim.inject(src, ("send", dst, "split"))
    sim.run_for(0.1)
    assert [(node, got.sender) for _, node, got in seen] == [(B, A)]
    assert sim.stats["partitioned"] == 2
    sim.heal()
    sim.inject(C, ("send", A, "healed"))
    sim.run_for(0.1)
    assert seen[-1][1:] == (A, Got(C, "healed"))


def test_killed_node_stops_and_restart_starts_a_new_life() -> None:
    sim, seen = make_sim(latency=0.01, jitter=0.0)
    sim.add_node(A, Toy((B,), period=0.1))
    sim.add_node(B, Toy())
    sim.run_until(0.55)
    beats_before = len(seen)
    sim.inject(B, ("send", A, "in flight"))
    sim.run_until(0.555)  # B's message to A is on the wire when A dies
    sim.kill(A, notify_peers=True)
    sim.run_until(1.0)
    assert len([s for s in seen if s[1] == B and s[2].payload != "in flight"]) == beats_before + 1
    assert seen[-1] == (pytest.approx(0.565), B, Got(A, None))  # B saw the connection drop
    assert sim.stats["undeliverable"] == 1  # the in-flight message died with A
    assert not sim.is_running(A) and sim.running_nodes() == [B]
    with pytest.raises(LocalProtocolError):
        sim.kill(A)
    sim.restart(A, Toy((B,), period=0.1, start=sim.now))
    sim.run_until(1.5)
    assert sum(1 for s in seen if s[0] > 1.0) == 4  # new life, new timer: beats of 1.1 .. 1.4


def test_run_until_true_stops_early_or_times_out() -> None:
    sim, seen = make_sim()
    sim.add_node(A, Toy((B,), period=0.1))
    sim.add_node(B, Toy())
    assert sim.run_until_true(lambda: len(seen) >= 3, timeout=10.0)
    assert 0.3 <= sim.now < 0.32
    assert not sim.run_until_true(lambda: False, timeout=1.0)
    assert sim.now == pytest.approx(1.3, abs=0.02)


def test_callbacks_at_one_instant_run_in_insertion_order() -> None:
    sim, _ = make_sim()
    order: list[int] = []
    for i in range(5):
        sim.call_at(1.0, lambda i=i: order.append(i))
    sim.run_until(2.0)
    assert order == [0, 1, 2, 3, 4]


def test_core_that_never_advances_its_deadline_is_reported() -> None:
    class Stuck(Toy):
        def tick(self, now: float) -> list[object]:
            return []

    sim, _ = make_sim()
    sim.add_node(A, Stuck(period=0.1))
    with pytest.raises(LocalProtocolError, match="does not advance"):
        sim.run_until(1.0)
