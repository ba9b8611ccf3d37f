"""What a leader is asked to do: proposals, single-server membership changes, hand-over. No I/O.

Membership changes follow the dissertation's single-server rule (section 4.1): one member is
added, removed, promoted or demoted per configuration entry; the new configuration is in force
as soon as it is appended; and the next change waits until that entry is committed and the
leader has committed an entry of its own term (the fix for the bug Ongaro reported in 2015).
Only a learner that has caught up with the commit index is promoted to voter, so adding a
voter never stalls commits while it copies the log. A leader never removes or demotes itself:
it hands leadership over first (``TransferLeadership``), as a voter leaving with SIGTERM does.

Hand-over: the leader stops accepting proposals, brings the target up to date and sends it
``TimeoutNow``; the target starts an election at once, which voters answer although they heard
from the leader lately. A hand-over not done within ``transfer_timeout`` is abandoned.
"""

from __future__ import annotations

from bzzz_edge.consensus._events import (
    Accepted,
    ChangeMember,
    Propose,
    Rejected,
    Rejection,
    Role,
    State,
    TransferLeadership,
)
from bzzz_edge.consensus._messages import Configuration, Entry, EntryKind, TimeoutNow
from bzzz_edge.consensus._state import CoreState

__all__ = ["ChangesMixin"]


class ChangesMixin(CoreState):
    def _refusal(self) -> Rejection | None:
        if self._state is not State.LEADER:
            return Rejection.NOT_LEADER
        if self._transfer_to is not None:
            return Rejection.TRANSFERRING
        if self._log.last_index - self._commit >= self._cfg.max_pending_proposals:
            return Rejection.BACKLOG
        return None

    def _reject(self, ref: int, reason: Rejection) -> None:
        self._counters[f"rejected_{reason.name.lower()}"] += 1
        self._emit(Rejected(ref, reason, self._leader))

    def _append_and_send(self, ref: int, entry: Entry, now: float) -> None:
        self._append_local(entry)
        self._emit(Accepted(ref, entry.index, entry.term))
        if entry.kind is EntryKind.CONFIG:
            self._config_changed(now)
        self._send_new_entries(now)

    def _on_propose(self, event: Propose, now: float) -> None:
        reason = self._refusal()
        if reason is None and len(event.command) > self._cfg.max_command_bytes:
            reason = Rejection.TOO_LARGE
        if reason is not None:
            self._reject(event.ref, reason)
            return
        entry = Entry(self._term, self._log.last_index + 1, EntryKind.COMMAND, event.command)
        self._append_and_send(event.ref, entry, now)

    def _on_change_member(self, event: ChangeMember, now: float) -> None:
        reason = self._refusal()
        if reason is None and (self._log.config_index() > self._commit
                               or self._commit < self._term_start):
            reason = Rejection.CHANGE_PENDING
        new = self._changed_config(event, now) if reason is None else None
        if reason is None and new is None:
            reason = Rejection.INVALID_CHANGE
        if reason is not None or new is None:
            self._reject(event.ref, reason or Rejection.INVALID_CHANGE)
            return
        entry = Entry(self._term, self._log.last_index + 1, EntryKind.CONFIG, config=new)
        self._append_and_send(event.ref, entry, now)

    def _changed_config(self, event: ChangeMember, now: float) -> Configuration | None:
        """The configuration after ``event``, or None if the change is not allowed."""
        config = self._log.config()
        node, voters, learners = event.node, set(config.voters), set(config.learners)
        if node == self._id and event.role is not Role.VOTER:
            return None  # hand leadership over first
        if event.role is Role.VOTER:
            if node not in learners or node not in self.caught_up(now):
                return None  # only a caught-up learner is promoted
            learners.discard(node)
            voters.add(node)
        elif event.role is Role.LEARNER:
            if node in learners:
                return None
            voters.discard(node)
            learners.add(node)
        else:
            if node not in voters | learners:
                return None
            voters.discard(node)
            learners.discard(node)
        if not voters:
            return None
        return Configuration(frozenset(voters), frozenset(learners))

    def _on_transfer(self, event: TransferLeadership, now: float) -> None:
        voters = self._log.config().voters - {self._id}
        if self._state is not State.LEADER or not voters:
            self._counters["transfers_refused"] += 1
            return
        target = event.target
        if target is None:
            target = max(sorted(voters), key=lambda v: self._progress[v].match)
        if target not in voters:
            self._counters["transfers_refused"] += 1
            return
        self._transfer_to = target
        self._transfer_until = now + self._cfg.transfer_timeout
        self._maybe_hand_over(now)
        self._replicate(target, now)

    def _maybe_hand_over(self, now: float) -> None:
        target = self._transfer_to
        progress = self._progress.get(target) if target is not None else None
        if target is not None and progress is not None and \
                progress.match == self._log.last_index:
            self._send(target, TimeoutNow(self._term))
