"""The driver's batch rules: which leader batches skip the wait for their own write, and the
write-behind queue (started at once, reported in order, awaited)."""

from __future__ import annotations

import trio
import trio.testing

from bzzz_edge.consensus import (
    Accepted,
    AppendResponse,
    Apply,
    Entry,
    EntryKind,
    Persist,
    Propose,
    RoleChanged,
    Send,
    State,
    TakeSnapshot,
)
from bzzz_edge.consensus._batch import WriteBehind, applies_early, leader_only, stored_through


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


def test_write_behind_starts_each_write_at_once_and_reports_them_in_order_merged() -> None:
    trio.run(_write_behind, clock=trio.testing.MockClock(autojump_threshold=0))


class _Pending:
    def __init__(self) -> None:
        self.durable = trio.Event()

    @property
    def done(self) -> bool:
        return self.durable.is_set()

    async def result(self) -> None:
        await self.durable.wait()


async def _write_behind() -> None:
    started: list[list[int]] = []
    pending: list[_Pending] = []
    written: list[list[int]] = []

    def start(batch: list[Persist]) -> _Pending:
        started.append([e.index for p in batch for e in p.entries])
        pending.append(_Pending())
        return pending[-1]

    behind = WriteBehind(start, lambda batch: written.append(
        [e.index for p in batch for e in p.entries]))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(behind.run)
        await trio.testing.wait_all_tasks_blocked()
        behind.add([Persist(1, None, (_entry(1),))])
        # Handed to the writer before the driver sends the appends (no scheduling round
        # between): the leader's sync overlaps the followers' round trip.
        assert started == [[1]]
        behind.add([Persist(1, None, (_entry(2),)), Persist(1, None, (_entry(3),))])
        assert started == [[1], [2, 3]]
        pending[1].durable.set()  # the writer answers out of order: still reported in order
        await trio.testing.wait_all_tasks_blocked()
        assert written == []
        with trio.move_on_after(0.05) as scope:
            await behind.idle()
        assert scope.cancelled_caught, "idle before the writes were durable"
        pending[0].durable.set()
        with trio.fail_after(5):
            await behind.idle()
        assert written == [[1, 2, 3]]  # durable together: one report
        # A write the driver already queued itself (its inline commit was declined) is
        # waited for, not started again.
        queued = _Pending()
        behind.add([Persist(1, None, (_entry(4),))], queued)
        assert started == [[1], [2, 3]] and behind.queued
        queued.durable.set()
        with trio.fail_after(5):
            await behind.idle()
        assert written == [[1, 2, 3], [4]] and not behind.queued
        nursery.cancel_scope.cancel()


def test_committed_entries_apply_while_their_write_syncs_unless_a_snapshot_or_a_truncation(
        make_net) -> None:
    net = make_net(5, voters=3)  # a learner is sent entries with their commit
    leader = net.elect()
    net.advance(0.1)
    net.handle(leader, Propose(1, b"a"))
    net.actions = {node: [] for node in net.ids}
    net.deliver()
    learner = net.actions[net.ids[4]]
    # (its answer deferred: a learner answers one append in ``LEARNER_ANSWERS_EVERY``)
    assert [type(a).__name__ for a in learner] == ["Persist", "Apply"]
    assert applies_early(learner)  # the Apply need not wait for the Persist's sync
    write = Persist(1, None, (_entry(7),))
    assert not applies_early([write, Apply((_entry(7),)), TakeSnapshot(7)])
    replacing = Persist(1, None, (_entry(7),), truncate_from=7)
    assert not applies_early([replacing, Apply((_entry(7),))])
    assert stored_through(9, [replacing]) == 7
    assert stored_through(9, [Persist(1, None, (), truncate_from=5)]) == 4
