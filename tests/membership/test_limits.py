"""Bounds a peer cannot push us past: table size, message size, incarnation jumps (issue 8)."""

from __future__ import annotations

import dataclasses
import hashlib

import msgpack
from hypothesis import given
from hypothesis import strategies as st

from bzzz_edge.membership import (
    MAX_FIRST_INCARNATION,
    MAX_INCARNATION_JUMP,
    Address,
    AliveUpdate,
    DeadUpdate,
    Gossip,
    MemberEvent,
    MemberForgotten,
    Membership,
    Offence,
    Penalise,
    Received,
    Send,
    Status,
    SuspectUpdate,
    Sync,
    SyncEntry,
    encode_message,
    lan,
    start_incarnation,
)
from bzzz_edge.membership._limits import entry_size, update_size
from bzzz_edge.membership._messages import MAX_INCARNATION, MAX_SYNC_ENTRIES

from .conftest import addr, deliver, make, nid

BIG_META = {f"key{i:02d}" + "k" * 59: "v" * 256 for i in range(16)}


def fake(i: int) -> bytes:
    return hashlib.sha256(b"fake %d" % i).digest()


def wire_size(send: Send) -> int:
    return len(msgpack.packb(encode_message(send.message), use_bin_type=True))


metas = st.dictionaries(
    st.text(min_size=1, max_size=64),
    st.one_of(
        st.text(max_size=256),
        st.binary(max_size=256),
        st.integers(-(2**63), 2**63 - 1),
        st.booleans(),
    ),
    max_size=16,
)


@given(metas, st.text(min_size=1, max_size=253), st.integers(0, 2**63 - 1))
def test_size_bounds_are_upper_bounds_of_the_encoding(meta: dict, host: str, inc: int) -> None:
    update = AliveUpdate(nid(1), inc, Address(host, 65535), meta)
    assert update_size(update) >= len(msgpack.packb(encode_message(Gossip((update,)))[2][0]))
    entry = SyncEntry(nid(1), inc, Status.SUSPECT, Address(host, 65535), meta)
    encoded = encode_message(Sync(False, (entry,)))[3][0]  # type: ignore[index]
    assert entry_size(entry) >= len(msgpack.packb(encoded))


def test_a_dead_claim_at_the_largest_incarnation_is_dropped_and_refutation_stays_possible() -> None:
    a = make(0)
    out = deliver(a, nid(1), Gossip((DeadUpdate(a.self_id, MAX_INCARNATION, nid(1)),)), 1.0)
    assert a.incarnation == 0 and a.counters["implausible_incarnations"] == 1
    assert [e for e in out if isinstance(e, MemberEvent)] == []
    # A claim within reach is refuted as usual, however often it comes.
    for step in range(1, 4):
        claim = a.incarnation + MAX_INCARNATION_JUMP
        deliver(a, nid(1), Gossip((SuspectUpdate(a.self_id, claim, nid(1)),)), 1.0 + step)
        assert a.incarnation == claim + 1
    assert a.incarnation < MAX_INCARNATION - 2**40  # an attacker needs ~2**42 rounds more


def test_implausible_news_about_others_is_dropped_but_a_member_may_speak_for_itself() -> None:
    a = make(0)
    deliver(a, nid(1), Gossip((AliveUpdate(nid(1), 3, addr(1), {}),)), 1.0)
    too_far = 3 + MAX_INCARNATION_JUMP + 1
    deliver(a, nid(2), Gossip((DeadUpdate(nid(1), too_far, nid(2)),)), 1.1)
    assert a.status_of(nid(1)) is Status.ALIVE and a.member(nid(1)).incarnation == 3
    # Nobody may introduce a stranger at an absurd incarnation either...
    deliver(a, nid(2), Gossip((AliveUpdate(nid(3), MAX_FIRST_INCARNATION + 1, addr(3), {}),)), 1.2)
    assert a.member(nid(3)) is None
    # ...but a member's own word, over its own connection, stands.
    deliver(a, nid(1), Gossip((AliveUpdate(nid(1), too_far, addr(1), {}),)), 1.3)
    assert a.member(nid(1)).incarnation == too_far


def penalties(actions: list) -> list[Penalise]:
    return [x for x in actions if isinstance(x, Penalise)]


def raw(message: object) -> object:
    """A message as it comes off the wire (msgpack round trip), so the core decodes it."""
    return msgpack.unpackb(msgpack.packb(encode_message(message), use_bin_type=True))


def test_implausible_incarnation_claims_cost_the_sender_one_strike_per_message() -> None:
    a = make(0)
    deliver(a, nid(1), Gossip((AliveUpdate(nid(1), 3, addr(1), {}),)), 1.0)
    too_far = 3 + MAX_INCARNATION_JUMP + 1
    claims = Gossip((DeadUpdate(nid(1), too_far, nid(2)),
                     AliveUpdate(nid(3), MAX_FIRST_INCARNATION + 1, addr(3), {}),
                     DeadUpdate(a.self_id, MAX_INCARNATION, nid(2))))
    out = deliver(a, nid(2), claims, 1.1)
    assert penalties(out) == [Penalise(nid(2), Offence.IMPLAUSIBLE_INCARNATION)]
    assert a.counters["implausible_incarnations"] == 3
    # The same claims over the wire, and inside a full state: the same charge.
    out = a.handle(Received(nid(2), raw(claims)), 1.2)
    assert penalties(out) == [Penalise(nid(2), Offence.IMPLAUSIBLE_INCARNATION)]
    state = Sync(False, (SyncEntry(nid(1), too_far, Status.DEAD, addr(1), {}),))
    assert penalties(deliver(a, nid(2), state, 1.3)) == [
        Penalise(nid(2), Offence.IMPLAUSIBLE_INCARNATION)]


def test_plausible_news_and_a_member_speaking_for_itself_cost_nothing() -> None:
    a = make(0)
    out = deliver(a, nid(1), Gossip((AliveUpdate(nid(1), 3, addr(1), {}),)), 1.0)
    out += deliver(a, nid(2), Gossip((SuspectUpdate(nid(1), 3 + MAX_INCARNATION_JUMP, nid(2)),
                                      SuspectUpdate(a.self_id, 5, nid(2)))), 1.1)
    out += deliver(a, nid(1), Gossip((AliveUpdate(nid(1), MAX_INCARNATION - 1, addr(1), {}),)),
                   1.2)
    out += a.handle(Received(nid(1), [99, 1, "a kind from the future"]), 1.3)
    assert penalties(out) == []
    assert a.member(nid(1)).incarnation == MAX_INCARNATION - 1


def test_oversized_metadata_or_state_claims_cost_the_sender_a_strike() -> None:
    a = make(0)
    too_much_meta = dict(BIG_META, extra="x")
    claims = [
        Gossip((AliveUpdate(nid(3), 1, addr(3), too_much_meta),)),
        Gossip((AliveUpdate(nid(3), 1, addr(3), {"k": "v" * 257}),)),
        Sync(False, tuple(SyncEntry(fake(i), 0, Status.ALIVE, addr(2), {})
                          for i in range(MAX_SYNC_ENTRIES + 1))),
    ]
    for step, claim in enumerate(claims):
        out = a.handle(Received(nid(2), raw(claim)), 1.0 + step)
        assert out == [Penalise(nid(2), Offence.MALFORMED)], step
    assert a.counters["malformed"] == 3
    assert a.member(nid(3)) is None and len(a.members()) == 1


def test_a_stored_incarnation_out_of_range_never_stops_a_start() -> None:
    assert start_incarnation(None) == 0
    assert start_incarnation(41) == 42
    for bad in (-1, MAX_INCARNATION, 2**64, "7", 1.5, True, [1]):
        assert start_incarnation(bad) == 0
    make(0, incarnation=start_incarnation(MAX_INCARNATION))  # constructs fine


def test_rumoured_members_are_capped_and_forgotten_unless_they_speak_up() -> None:
    config = dataclasses.replace(lan(), max_unverified_members=50, unverified_member_ttl=30.0)
    a = make(0, config=config)
    deliver(a, nid(1), Gossip((AliveUpdate(nid(1), 0, addr(1), {}),)), 0.0)
    for start in range(0, 2000, 100):  # an attacker gossips 2,000 invented members
        news = tuple(AliveUpdate(fake(i), 0, addr(2), {}) for i in range(start, start + 100))
        deliver(a, nid(1), Gossip(news), 0.0)
    assert len(a.members()) == 2 + 50
    assert a.counters["members_refused"] == 1950
    # One of them is real and answers us: it stays; the others go after the TTL.
    real = fake(7)
    out = deliver(a, real, Gossip(()), 1.0)
    verified = [e for e in out if isinstance(e, MemberEvent) and e.node == real]
    assert verified and verified[0].verified and a.member(real).verified
    forgotten: list[bytes] = []
    t = 1.0
    while t < 120.0:
        t = a.next_deadline() or t + 1.0
        forgotten += [x.node for x in a.tick(t) if isinstance(x, MemberForgotten)]
    assert len(forgotten) == 49 and real not in forgotten
    assert {m.node for m in a.members()} == {a.self_id, nid(1), real}


def test_a_member_speaking_for_itself_displaces_a_rumour_when_the_table_is_full() -> None:
    config = dataclasses.replace(lan(), max_members=10, max_unverified_members=10)
    a = make(0, config=config)
    news = tuple(AliveUpdate(fake(i), 0, addr(2), {}) for i in range(20))
    deliver(a, nid(1), Gossip(news), 0.0)
    assert len(a.members()) == 10  # nid(1) itself is not in the table: it spoke of others only
    deliver(a, nid(5), Gossip((AliveUpdate(nid(5), 0, addr(5), {}),)), 0.1)
    assert a.member(nid(5)) is not None and a.member(nid(5)).verified
    assert len(a.members()) == 10 and a.counters["unverified_evicted"] == 1


def test_full_state_exchange_is_split_into_messages_within_the_budget() -> None:
    config = dataclasses.replace(lan(), max_message_bytes=64 * 1024)
    a = make(0, config=config)
    for i in range(150):  # 150 members with the largest metadata, each speaking for itself
        deliver(a, fake(i), Gossip((AliveUpdate(fake(i), 0, addr(1), BIG_META),)), 0.0)
    assert len(a.members()) == 151
    sync_sends = [
        x
        for x in deliver(a, nid(9), Sync(False, ()), 1.0)
        if isinstance(x, Send) and isinstance(x.message, Sync)
    ]
    assert len(sync_sends) > 1
    assert all(wire_size(s) <= config.max_message_bytes for s in sync_sends)
    assert sum(len(s.message.entries) for s in sync_sends) == 151  # type: ignore[union-attr]
    # This was an answer to a request: every part is a reply.
    assert [s.message.reply for s in sync_sends] == [True] * len(sync_sends)  # type: ignore[union-attr]
    b = make(9, config=config)
    replies = 0
    for part in sync_sends:
        msg = part.message
        assert isinstance(msg, Sync)
        out = deliver(b, a.self_id, msg, 1.1)
        replies += sum(1 for x in out if isinstance(x, Send) and isinstance(x.message, Sync))
    assert len(b.members()) == 152  # every part merged, b itself included
    assert replies == 0  # these were all parts of a reply


def test_piggybacked_news_never_exceeds_the_message_budget() -> None:
    config = dataclasses.replace(lan(), max_message_bytes=16 * 1024)
    a = make(0, config=config)
    deliver(a, nid(1), Gossip((AliveUpdate(nid(1), 0, addr(1), {}),)), 0.0)
    for i in range(40):
        deliver(a, fake(i), Gossip((AliveUpdate(fake(i), 0, addr(1), BIG_META),)), 0.0)
    t = 0.0
    seen: list[int] = []
    while len(seen) < 30:
        t = a.next_deadline() or t + 0.1
        seen += [wire_size(x) for x in a.tick(t) if isinstance(x, Send)]
    assert max(seen) <= config.max_message_bytes


def test_membership_messages_we_build_fit_a_frame_whatever_the_table_holds() -> None:
    # Fill to the byte cap with the largest records; nothing raises, every message fits.
    config = dataclasses.replace(lan(), max_table_bytes=512 * 1024)
    a = Membership(nid(0), address=addr(0), now=0.0, config=config)
    for i in range(400):
        deliver(a, fake(i), Gossip((AliveUpdate(fake(i), 0, addr(1), BIG_META),)), 0.0)
    assert a.counters["members_refused"] > 0
    sizes = [wire_size(x) for x in deliver(a, nid(9), Sync(False, ()), 1.0) if isinstance(x, Send)]
    assert sizes and max(sizes) <= config.max_message_bytes
