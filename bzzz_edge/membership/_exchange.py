"""Full-state exchange: joins, periodic push-pull and reconnecting to the dead. No I/O.

The anti-entropy half of the membership core, owned by it (``_swim.Membership``) like the
failure detector: the core hands it syncs and join requests and calls ``tick``; what it sends
goes through the core's ``send``, what it learns goes into the member table.

- A join is a full-state exchange with one node, retried every ``join_retry_interval`` up to
  ``join_attempts`` times until the node answers or turns up alive; one pending join per node.
- Push-pull: every ``push_pull_interval`` (scaled for large clusters) with a random live
  member, which repairs whatever gossip missed.
- Reconnect: every ``reconnect_interval`` with a random dead member, which is how the two sides
  of a healed partition find each other again; tombstones past their time are reaped first.
- Our state is split into messages within ``max_message_bytes``; the first part of a request
  is the only one the receiver answers.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from bzzz_edge.membership._config import MembershipConfig, push_pull_scale
from bzzz_edge.membership._limits import MESSAGE_OVERHEAD, entry_size
from bzzz_edge.membership._messages import (
    MAX_SYNC_ENTRIES,
    Address,
    Gossip,
    Message,
    Status,
    Sync,
    SyncEntry,
)
from bzzz_edge.membership._table import LIVE, MemberTable

__all__ = ["StateExchange"]


@dataclass(slots=True)
class _PendingJoin:
    """A full-state exchange we started; at most one per node per retry interval."""

    address: Address | None
    attempts: int
    retry_at: float
    answered: bool = False


class StateExchange:
    """Joins, push-pull and reconnects of one node. See the module docstring.

    Args:
        send: queues a message to a member, at ``address`` when given (the core's output).
    """

    def __init__(
        self,
        config: MembershipConfig,
        table: MemberTable,
        rng: random.Random,
        counters: Counter[str],
        send: Callable[[bytes, Message, Address | None], None],
        now: float,
    ) -> None:
        self._config = config
        self._table = table
        self._rng = rng
        self._counters = counters
        self._send = send
        self._joins: dict[bytes, _PendingJoin] = {}
        # Random phases, so nodes started together do not sync in lockstep.
        self.next_push_pull = now + rng.uniform(0.5, 1.0) * config.push_pull_interval
        self.next_reconnect = now + rng.uniform(0.5, 1.0) * config.reconnect_interval

    def deadlines(self) -> Iterator[float]:
        """When pending joins are retried (push-pull and reconnect are the attributes)."""
        return (join.retry_at for join in self._joins.values())

    def tick(self, now: float) -> None:
        """Retry joins, and push-pull or reconnect when due."""
        self._retry_joins(now)
        if now >= self.next_push_pull:
            self._push_pull(now)
        if now >= self.next_reconnect:
            self._reconnect(now)

    def clear(self) -> None:
        """Stop joining (this node left)."""
        self._joins.clear()

    def join(self, node: bytes, address: Address | None, now: float) -> None:
        """Exchange full state with ``node`` (at ``address``, if it is not a member yet)."""
        if node in self._joins:
            return
        retry_at = now + self._config.join_retry_interval
        self._joins[node] = _PendingJoin(address, 1, retry_at)
        self.send_sync(node, reply=False, address=address)

    def on_sync(self, sender: bytes, message: Sync, now: float) -> None:
        join = self._joins.get(sender)
        if join is not None and message.reply:
            # No round-trip sample from this: the answer waits on the peer's start-up work.
            join.answered = True
        table = self._table
        table.stale_self_news = False
        for entry in message.entries:
            table.merge_entry(sender, entry, now)
        if message.reply and table.stale_self_news:
            self._send(sender, Gossip((table.my_alive(),)), None)
        if not message.reply:
            self.send_sync(sender, reply=True)

    def send_sync(self, to: bytes, *, reply: bool, address: Address | None = None) -> None:
        """Send our full state, split into messages within the byte budget; a request goes
        first and is the only part the receiver answers."""
        self._counters["syncs_sent"] += 1
        room = self._config.max_message_bytes - MESSAGE_OVERHEAD
        chunk: list[SyncEntry] = []
        used = 0
        first = True
        for entry in self._table.entries():
            size = entry_size(entry)
            if chunk and (used + size > room or len(chunk) >= MAX_SYNC_ENTRIES):
                self._send(to, Sync(reply or not first, tuple(chunk)), address)
                self._counters["sync_parts"] += 1
                chunk, used, first = [], 0, False
            chunk.append(entry)
            used += size
        self._send(to, Sync(reply or not first, tuple(chunk)), address)

    def _retry_joins(self, now: float) -> None:
        for node, join in list(self._joins.items()):
            if now < join.retry_at:
                continue
            current = self._table.get(node)
            done = join.answered or (current is not None and current.status in LIVE)
            if done or join.attempts >= self._config.join_attempts:
                del self._joins[node]
                continue
            join.attempts += 1
            join.retry_at = now + self._config.join_retry_interval
            self.send_sync(node, reply=False, address=join.address)

    def _push_pull(self, now: float) -> None:
        interval = push_pull_scale(self._config.push_pull_interval, self._table.num_live())
        self.next_push_pull = now + interval
        peers = self._sample(lambda node: self._table[node].status is Status.ALIVE)
        if peers:
            self.send_sync(peers[0], reply=False)

    def _reconnect(self, now: float) -> None:
        self.next_reconnect = now + self._config.reconnect_interval
        self._table.reap(now)
        peers = self._sample(lambda node: self._table[node].status is Status.DEAD)
        if peers:
            self._counters["reconnects"] += 1
            self.send_sync(peers[0], reply=False)

    def _sample(self, accept: Callable[[bytes], bool]) -> list[bytes]:
        return self._table.order.sample(self._rng, 1, accept)
