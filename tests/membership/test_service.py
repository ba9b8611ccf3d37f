"""The membership service in process: what it announces about itself, what it charges."""

from __future__ import annotations

import secrets
import sys
import threading
import time

import msgpack
import trio

from bzzz_edge.identity import Identity
from bzzz_edge.membership import (
    Ack,
    Address,
    AliveUpdate,
    DeadUpdate,
    Gossip,
    MemberForgotten,
    Ping,
    Received,
    Send,
    Status,
    decode_message,
    encode_message,
    lan,
)
from bzzz_edge.membership._messages import MAX_INCARNATION
from bzzz_edge.membership.service import MembershipService
from bzzz_edge.net import ConnectionManager, NetLimits, Source
from bzzz_edge.store import Store
from bzzz_edge.store.peers import PeerTable
from bzzz_edge.wire.envelope import DirectMessage, encode_envelope
from bzzz_edge.wire.types import SWIM

dial = sys.modules["_bzzz_test_harness_dial"]  # tests/_harness/dial.py, via conftest


def test_advertised_address_is_what_membership_announces(tmp_path):
    async def main():
        manager = ConnectionManager(Identity.generate(), secrets.token_bytes(32),
                                    listen=("0.0.0.0", 0), limits=NetLimits())
        table = PeerTable(Store(tmp_path / "store", map_size=2**24))
        service = MembershipService(manager, table, profile=lan(), advertise="127.0.0.1",
                                    meta={"name": "n"})
        async with trio.open_nursery() as nursery:
            port = await nursery.start(manager.run)
            await nursery.start(service.run)
            me = service.core.member(manager.node_id)
            assert (me.address.host, me.address.port) == ("127.0.0.1", port)
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_stored_incarnation_out_of_range_does_not_stop_a_start(tmp_path):
    async def main():
        store = Store(tmp_path / "store", map_size=2**24)
        store.put_meta("incarnation", 2**63)  # what a hostile claim once made nodes store
        manager = ConnectionManager(Identity.generate(), secrets.token_bytes(32),
                                    listen=("127.0.0.1", 0), limits=NetLimits())
        service = MembershipService(manager, PeerTable(store), profile=lan(), advertise="",
                                    meta={})
        async with trio.open_nursery() as nursery:
            await nursery.start(manager.run)
            await nursery.start(service.run)
            assert service.core.incarnation == 0
            assert store.get_meta("incarnation", None) == 0
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_an_implausible_claim_costs_its_sender_a_strike_over_loopback(tmp_path):
    """A peer holding the network key claims the victim dead at the last incarnation: the
    claim is dropped and the transport's guard charges the sender, the route gossip's
    penalties take."""
    async def main():
        key = secrets.token_bytes(32)
        victim = ConnectionManager(Identity.generate(), key, listen=("127.0.0.1", 0),
                                   limits=NetLimits())
        service = MembershipService(victim, PeerTable(Store(tmp_path / "store", map_size=2**24)),
                                    profile=lan(), advertise="127.0.0.1", meta={})
        spy = ConnectionManager(Identity.generate(), key, listen=("127.0.0.1", 0),
                                limits=NetLimits())
        spy_events = spy.events.subscribe()
        acked = trio.Event()

        def on_swim(sender, envelope):
            message = decode_message(msgpack.unpackb(envelope.body))
            if isinstance(message, Ack) and message.seq == 77:
                acked.set()

        spy.on_envelope(SWIM, on_swim)

        def swim(message) -> bytes:
            body = msgpack.packb(encode_message(message), use_bin_type=True)
            return encode_envelope(DirectMessage(*SWIM.key, body))

        async with trio.open_nursery() as nursery:
            port = await nursery.start(victim.run)
            await nursery.start(service.run)
            await nursery.start(spy.run)
            await dial.dial_and_wait(spy, port, spy_events)
            assert victim.guard.strikes(spy.node_id, trio.current_time()) == 0
            claim = Gossip((DeadUpdate(victim.node_id, MAX_INCARNATION, spy.node_id),))
            assert spy.send(victim.node_id, swim(claim))
            # One connection reads in order: the answer to this ping means the claim was taken.
            assert spy.send(victim.node_id, swim(Ping(77, victim.node_id)))
            with trio.fail_after(10):
                await acked.wait()
            assert service.counters()["implausible_incarnations"] == 1
            assert victim.guard.strikes(spy.node_id, trio.current_time()) == 1
            assert service.core.incarnation == 0
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_a_type_without_a_handler_is_counted_not_ignored(tmp_path):
    async def main():
        manager = ConnectionManager(Identity.generate(), secrets.token_bytes(32),
                                    listen=("127.0.0.1", 0), limits=NetLimits())
        service = MembershipService(manager, PeerTable(Store(tmp_path / "s", map_size=2**24)),
                                    profile=lan(), advertise="", meta={})
        assert service.counters()["unhandled_types"] == 0
        service._perform([object(), MemberForgotten(b"\x01" * 32), object()])
        assert service.counters()["unhandled_types"] == 2
        assert service.unhandled == {"object": 2}

    trio.run(main)


def test_a_send_that_fails_is_a_lost_connection_to_the_core(tmp_path):
    """Nothing is connected, so every send fails; the core hears of it as ConnectionLost and
    probes the member at once (a hint), once."""
    async def main():
        manager = ConnectionManager(Identity.generate(), secrets.token_bytes(32),
                                    listen=("127.0.0.1", 0), limits=NetLimits())
        service = MembershipService(manager, PeerTable(Store(tmp_path / "s", map_size=2**24)),
                                    profile=lan(), advertise="", meta={})
        peer = Identity.generate().node_id
        async with trio.open_nursery() as nursery:
            await nursery.start(manager.run)
            await nursery.start(service.run)
            assert service.counters().get("hint_probes", 0) == 0
            # The peer spoke for itself, over a connection that has since dropped.
            news = Gossip((AliveUpdate(peer, 0, Address("127.0.0.1", 9), {}),))
            service._perform(service._handle(Received(peer, news)))
            assert service.core.status_of(peer) is Status.ALIVE
            assert service.counters().get("hint_probes", 0) == 0
            service._perform([Send(peer, Gossip())])  # what the core sends next cannot go
            assert service.counters()["hint_probes"] == 1
            assert service.counters()["probes"] == 1  # the hint probe, whose ping failed too
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_an_ack_that_came_while_the_loop_was_held_is_read_before_the_probes_verdict(tmp_path):
    """The peer answers every ping at once, but this node's loop is held right after each ping
    leaves (a long step of another task: a gossip flood handled, a large write), for 125 ms:
    past the probe's end (twice the 50 ms floor of the timeout), yet within the 100 ms a timer
    may run late before the node sees itself as stalled. The ack waits in the socket; it must
    be read before the probe's verdict, or an honest peer becomes a suspect."""
    key = secrets.token_bytes(32)
    peer_port: list[int] = []
    peer_up, stop_peer = threading.Event(), threading.Event()

    def run_peer() -> None:  # its own thread and loop: it answers while ours is held
        async def main():
            manager = ConnectionManager(Identity.generate(), key, listen=("127.0.0.1", 0),
                                        limits=NetLimits())
            service = MembershipService(manager, PeerTable(Store(tmp_path / "peer",
                                                                 map_size=2**24)),
                                        profile=lan(), advertise="127.0.0.1", meta={})
            async with trio.open_nursery() as nursery:
                peer_port.append(await nursery.start(manager.run))
                await nursery.start(service.run)
                peer_up.set()
                await trio.to_thread.run_sync(stop_peer.wait)
                nursery.cancel_scope.cancel()

        trio.run(main)

    stalls = 8

    async def main():
        manager = ConnectionManager(Identity.generate(), key, listen=("127.0.0.1", 0),
                                    limits=NetLimits())
        service = MembershipService(manager, PeerTable(Store(tmp_path / "me", map_size=2**24)),
                                    profile=lan(), advertise="127.0.0.1", meta={})
        held = 0
        send = service._on_action[Send]

        def send_then_hold(action: Send) -> bytes | None:
            nonlocal held
            lost = send(action)
            if isinstance(action.message, Ping) and held < stalls:
                held += 1
                time.sleep(0.125)  # the long step: nothing else of this node runs meanwhile
            return lost

        async with trio.open_nursery() as nursery:
            await nursery.start(manager.run)
            await nursery.start(service.run)
            manager.want(("127.0.0.1", peer_port[0]), Source.BOOTSTRAP)
            with trio.fail_after(30):
                while service.counters().get("probes", 0) < 3:  # round trips measured
                    await trio.sleep(0.05)
                service._on_action[Send] = send_then_hold
                while held < stalls:
                    await trio.sleep(0.05)
                probes = service.counters()["probes"]
                while service.counters()["probes"] < probes + 2:  # the last one settled
                    await trio.sleep(0.05)
            counters = service.counters()
            assert counters.get("probe_failures", 0) == 0, str(sorted(counters.items()))
            # Most stalls were too short to be seen as such (else ``late`` put verdicts off).
            assert counters.get("late_ticks", 0) <= stalls // 2, counters
            nursery.cancel_scope.cancel()

    thread = threading.Thread(target=run_peer, daemon=True)
    thread.start()
    try:
        assert peer_up.wait(10)
        trio.run(main)
    finally:
        stop_peer.set()
        thread.join(10)
