"""What a peer sends never raises out of the core: malformed, oversized, stale, from
non-members or breaking the protocol, each is refused and counted."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bzzz_edge.consensus import (
    AppendEntries,
    AppendResponse,
    Configuration,
    Entry,
    EntryKind,
    InstallSnapshot,
    Limits,
    Received,
    RequestVote,
    Send,
    Snapshot,
    State,
    TimeoutNow,
    VoteResponse,
    decode_message,
    encode_message,
    lan,
)
from bzzz_edge.errors import DecodeError

from .conftest import node_id

MESSAGES = [
    RequestVote(3, 10, 2, True, False),
    VoteResponse(3, True, True),
    AppendEntries(4, 9, 3, 8, (Entry(4, 10, EntryKind.COMMAND, b"x"),
                               Entry(4, 11, EntryKind.NOOP),
                               Entry(4, 12, EntryKind.CONFIG,
                                     config=Configuration(frozenset({node_id(1)}))))),
    AppendResponse(4, False, 7),
    InstallSnapshot(5, Snapshot(100, 4, Configuration(frozenset({node_id(1)}),
                                                      frozenset({node_id(2)})), b"state")),
    TimeoutNow(6),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips_through_its_wire_form(message: object) -> None:
    assert decode_message(encode_message(message), Limits()) == message  # type: ignore[arg-type]


@pytest.mark.parametrize("value, field", [
    ([99, 1], "kind"),
    ([1, -1, 0, 0, False, False], "term"),
    ([1, 1, 0, 0, "no", False], "pre_vote"),
    ([3, 1, 0, 0, 0, [[1, 5, 0, b"x"]]], "index"),
    ([3, 1, 0, 0, 0, [[1, 1, 7, b"x"]]], "kind"),
    ([3, 1, 0, 0, 0, [[1, 1, 0, b"x" * 11]]], "data"),
    ([3, 1, 0, 0, 0, [[1, i + 1, 0, b""] for i in range(5)]], "entries"),
    ([3, 1, 0, 0, 0, [[1, 1, 2, [[b"short"], []]]]], "voters"),
    ([5, 1, 1, 1, [[], []], b"x" * 101], "snapshot.data"),
    ("garbage", "message"),
])
def test_malformed_and_oversized_messages_are_refused_naming_the_field(value, field) -> None:
    limits = Limits(max_entries=4, max_command_bytes=10, max_snapshot_bytes=100)
    with pytest.raises(DecodeError, match=field):
        decode_message(value, limits)


def test_a_bad_message_is_counted_and_the_node_carries_on(make_net) -> None:
    net = make_net(3, config=lan(max_command_bytes=100))
    leader = net.elect()
    follower = (leader + 1) % 3
    oversized = [3, net.core(follower).term, 1, 1, 0, [[1, 2, 0, b"x" * 101]]]
    for payload in (oversized, b"\x00", [2], None):
        assert net.handle(follower, Received(net.ids[leader], payload)) == []
    assert net.core(follower).counters["malformed"] == 4
    net.advance(0.3)
    assert net.leaders() == [leader]


def test_a_stale_term_append_is_refused_counted_and_answered_with_our_term(make_net) -> None:
    net = make_net(3)
    leader = net.elect()
    follower = (leader + 1) % 3
    term = net.core(follower).term
    stale = AppendEntries(term - 1, 0, 0, 0, ())
    out = net.handle(follower, Received(net.ids[leader], encode_message(stale)))
    assert [a.message for a in out if isinstance(a, Send)] == [AppendResponse(term, False, 1)]
    assert net.core(follower).counters["stale_term"] == 1


def test_responses_from_non_members_are_refused(make_net) -> None:
    net = make_net(3)
    leader = net.elect()
    stranger = node_id(99)
    forged = AppendResponse(net.core(leader).term, True, 1)
    assert net.handle(leader, Received(stranger, encode_message(forged))) == []
    assert net.core(leader).counters["non_member"] == 1


def test_a_message_claiming_our_own_id_is_a_protocol_error(make_net) -> None:
    net = make_net(3)
    leader = net.elect()
    net.handle(leader, Received(net.ids[leader], encode_message(TimeoutNow(1))))
    assert net.core(leader).counters["protocol_errors"] == 1
    assert net.core(leader).state is State.LEADER


def test_an_ack_for_entries_never_sent_is_a_protocol_error(make_net) -> None:
    net = make_net(3)
    leader = net.elect()
    lie = AppendResponse(net.core(leader).term, True, 10_000)
    net.handle(leader, Received(net.ids[(leader + 1) % 3], encode_message(lie)))
    assert net.core(leader).counters["protocol_errors"] == 1
    assert net.core(leader).commit_index < 10_000


def test_a_second_leader_in_our_term_is_a_protocol_error(make_net) -> None:
    net = make_net(3)
    leader = net.elect()
    rival = AppendEntries(net.core(leader).term, 0, 0, 0, ())
    net.handle(leader, Received(net.ids[(leader + 1) % 3], encode_message(rival)))
    assert net.core(leader).counters["protocol_errors"] == 1
    assert net.core(leader).state is State.LEADER


@settings(max_examples=300, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers(-2**64, 2**64) | st.binary(max_size=40),
    lambda children: st.lists(children, max_size=7), max_leaves=30))
def test_no_payload_raises_out_of_handle(payload: object) -> None:
    from .conftest import Net

    net = Net(3)
    net.handle(0, Received(net.ids[1], payload))
    net.handle(0, Received(net.ids[1], [3, 5, 0, 0, 0, payload]))
    net.handle(0, Received(net.ids[1], [1, 5, 0, 0, payload, False]))
