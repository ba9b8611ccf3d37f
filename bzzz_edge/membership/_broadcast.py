"""The queue of membership news waiting to be piggybacked or gossiped. No I/O.

Like memberlist's TransmitLimitedQueue: each piece of news is sent a limited number of times
(``retransmit_limit``, which grows with log(n)), the least-sent news goes first, and newer news
about a node replaces whatever older news about it is still queued, so a refutation never
travels behind the suspicion it answers.
"""

from __future__ import annotations

from bzzz_edge.membership._limits import update_size
from bzzz_edge.membership._messages import Update

__all__ = ["BroadcastQueue"]


class BroadcastQueue:
    """News about members, one entry per member, each sent at most ``limit`` times.

    Entries sit in buckets by how often they were sent; within a bucket, dict order is the
    order of arrival there, so taking from the lowest buckets, newest first, costs O(budget)
    instead of a sort of the whole queue per message. "Newest" is by arrival in the bucket,
    which can differ from memberlist's strict age order; only the preference is kept.
    """

    __slots__ = ("_buckets", "_where")

    def __init__(self) -> None:
        self._buckets: list[dict[bytes, Update]] = [{}]
        self._where: dict[bytes, int] = {}

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, node: object) -> bool:
        return node in self._where

    def queue(self, update: Update) -> None:
        """Queue ``update``, dropping any older news about the same node.

        The caller only queues news it accepted, which is always newer than what it replaces.
        """
        self.discard(update.node)
        self._buckets[0][update.node] = update
        self._where[update.node] = 0

    def discard(self, node: bytes) -> None:
        transmits = self._where.pop(node, None)
        if transmits is not None:
            del self._buckets[transmits][node]

    def transmits(self, node: bytes) -> int | None:
        """How often the queued news about ``node`` was sent, or None if none is queued."""
        return self._where.get(node)

    def take(
        self, budget: int, limit: int, skip: bytes | None = None, max_bytes: int | None = None
    ) -> list[Update]:
        """Up to ``budget`` updates to send now, least-sent first, then newest first.

        Each one taken counts as one transmission; news sent ``limit`` times is dropped.
        ``skip`` leaves out news about one node (the caller adds its own version of it).
        ``max_bytes`` bounds their encoded size (``update_size``); what does not fit stays
        queued for the next message.
        """
        if budget <= 0 or not self._where:
            return []
        room = max_bytes if max_bytes is not None else -1
        picked: list[tuple[int, bytes]] = []
        full = False
        for transmits, bucket in enumerate(self._buckets):
            for node in reversed(bucket):
                if node == skip:
                    continue
                if room >= 0:
                    size = update_size(bucket[node])
                    if size > room:
                        full = True
                        break
                    room -= size
                picked.append((transmits, node))
                if len(picked) >= budget:
                    full = True
                    break
            if full:
                break
        taken = []
        # Oldest first, so that within the next bucket the newer news still comes out first.
        for transmits, node in reversed(picked):
            update = self._buckets[transmits].pop(node)
            taken.append(update)
            if transmits + 1 >= limit:
                del self._where[node]
                continue
            if transmits + 1 == len(self._buckets):
                self._buckets.append({})
            self._buckets[transmits + 1][node] = update
            self._where[node] = transmits + 1
        taken.reverse()
        return taken
