"""Dissemination: gossip rounds, and the news told to members directly. No I/O.

The epidemic half of the membership core, owned by it (``_swim.Membership``) like the failure
detector and the state exchange: news waits in the member table's queue and rides every message
the core sends; while any is queued, a gossip round every ``gossip_interval`` pushes it to
``gossip_nodes`` random members, the recently dead included (for ``gossip_to_the_dead_time``,
so a member declared dead by mistake hears it and refutes). News that cannot wait for gossip is
told directly as well:

- our refutation, to every live member: it races their suspicion timers;
- our leave, to every live member;
- our alive news, to a sender still holding news about an older life of ours.

What it sends goes through the core's ``send``.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from bzzz_edge.membership._config import MembershipConfig
from bzzz_edge.membership._messages import Address, Gossip, Message, Status, Update
from bzzz_edge.membership._table import LIVE, MemberTable

__all__ = ["Dissemination"]


class Dissemination:
    """Gossip rounds and direct news of one node. See the module docstring.

    Args:
        send: queues a message to a member, at ``address`` when given (the core's output).
    """

    def __init__(
        self,
        config: MembershipConfig,
        table: MemberTable,
        rng: random.Random,
        send: Callable[[bytes, Message, Address | None], None],
        now: float,
    ) -> None:
        self._config = config
        self._table = table
        self._rng = rng
        self._send = send
        self.next_gossip = now
        self._refutation_pending = False

    def due(self) -> bool:
        """Whether there is news to gossip, and anyone to gossip it to."""
        return len(self._table.queue) > 0 and self._table.num_live() > 1

    def tick(self, now: float) -> None:
        if now >= self.next_gossip and self.due():
            self._gossip(now)

    def refuted(self) -> None:
        """We raised our incarnation to refute news about us: tell everyone at the next flush."""
        self._refutation_pending = True

    def flush(self) -> None:
        if self._refutation_pending:
            self._announce_refutation()

    def apply_all(self, sender: bytes, updates: tuple[Update, ...], now: float) -> None:
        """Take in the news a message carried, answering news about an older life of ours."""
        table = self._table
        table.stale_self_news = False
        for update in updates:
            table.apply(update, now, sender)
        if table.stale_self_news:
            # The sender still suspects (or buries) an older life of ours, and the news that
            # would correct it may have passed it by: answer it directly.
            self._send(sender, Gossip((table.my_alive(),)), None)

    def tell_live(self, update: Update) -> None:
        """Send ``update`` to every live member but us, at once."""
        me = self._table.me.node
        for member in self._table.members():
            if member.node != me and member.status in LIVE:
                self._send(member.node, Gossip((update,)), None)

    def _announce_refutation(self) -> None:
        # A refutation races the suspicion timers of every member that heard the suspicion.
        # Gossip alone leaves a small chance that one member misses it in time, which at
        # these timeouts was seen to cost a false death now and then under 5 % loss; a
        # refutation is rare, so tell every live member directly as well.
        self._refutation_pending = False
        if self._table.left:
            return
        self.tell_live(self._table.my_alive())

    def _gossip(self, now: float) -> None:
        self.next_gossip = now + self._config.gossip_interval
        recent = self._config.gossip_to_the_dead_time
        table = self._table

        def reachable(node: bytes) -> bool:
            member = table[node]
            if member.status is Status.DEAD:
                return now - member.since < recent
            return member.status in LIVE

        for target in table.order.sample(self._rng, self._config.gossip_nodes, reachable):
            updates = table.piggyback(target)
            if not updates:
                break
            self._send(target, Gossip(updates), None)
