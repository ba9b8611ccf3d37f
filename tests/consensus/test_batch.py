"""The driver's batch rules: which leader batches skip the wait for their own write, and the
write-behind queue (in order, merged, reported, awaited)."""

from __future__ import annotations

import trio
import trio.testing

from bzzz_edge.consensus import (
    Accepted,
    AppendResponse,
    Entry,
    EntryKind,
    Persist,
    Propose,
    RoleChanged,
    Send,
    State,
)
from bzzz_edge.consensus._batch import WriteBehind, leader_only


def _entry(index: int) -> Entry:
    return Entry(1, index, EntryKind.COMMAND, b"x")


def test_only_a_leaders_entry_writes_and_their_appends_skip_the_wait(make_net) -> None:
    net = make_net(3)
    leader = net.elect()
    net.advance(0.1)
    core = net.core(leader)
    actions = core.handle(Propose(1, b"a"), net.now)
    assert any(isinstance(a, Persist) and a.entries for a in actions)
    assert leader_only(core, actions, core.term)
    assert not leader_only(core, actions, core.term + 1)  # it was not leader in that term
    follower = net.core((leader + 1) % 3)
    assert not leader_only(follower, actions, core.term)
    truncating = Persist(core.term, core.node_id, (_entry(5),), truncate_from=5)
    assert not leader_only(core, [truncating], core.term)
    hard_only = Persist(core.term + 1, None)
    assert not leader_only(core, [hard_only], core.term)
    answer = Send(net.ids[0], AppendResponse(core.term, True, 3))  # depends on our copy
    assert not leader_only(core, [answer], core.term)
    role = RoleChanged(State.LEADER, core.term, core.node_id)
    assert not leader_only(core, [Accepted(1, 2, core.term), role], core.term)


def test_write_behind_writes_in_order_merges_what_queued_and_reports_each() -> None:
    trio.run(_write_behind, clock=trio.testing.MockClock(autojump_threshold=0))


async def _write_behind() -> None:
    release = trio.Event()
    written: list[list[int]] = []
    stored: list[list[int]] = []

    async def persist(batch: list[Persist]) -> None:
        stored.append([e.index for p in batch for e in p.entries])
        if len(stored) == 1:
            await release.wait()  # the first write is slow: two more queue up meanwhile

    behind = WriteBehind(persist, lambda batch: written.append(
        [e.index for p in batch for e in p.entries]))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(behind.run)
        behind.add([Persist(1, None, (_entry(1),))])
        await trio.testing.wait_all_tasks_blocked()
        behind.add([Persist(1, None, (_entry(2),))])
        behind.add([Persist(1, None, (_entry(3),))])
        with trio.move_on_after(0.05) as scope:
            await behind.idle()
        assert scope.cancelled_caught, "idle before the writes were durable"
        release.set()
        with trio.fail_after(5):
            await behind.idle()
        assert stored == [[1], [2, 3]]
        assert written == stored
        nursery.cancel_scope.cancel()
