"""Failure detection: probes, ping-req relays, round-trip timeouts and local health. Sans-IO.

The part of SWIM that decides whom to suspect, with Lifeguard's refinements. Owned by the core
(``_swim.Membership``), which hands it the messages about probing and calls ``tick``; what it
sends goes through the core's ``send``, what it concludes goes into the member table.

- One member is probed per probe interval, in a fixed random order (``_probe``). The direct
  ping waits that member's probe timeout, derived from the round trips measured on earlier
  acks (``_rtt``: SRTT + 4 RTTVAR, bounded, doubled after each failure until a new sample);
  then ``indirect_checks`` relays ping it for us, each waiting its own timeout for the target.
  A probe that ends without an ack makes the member suspect at the incarnation probed.
- Local health (Lifeguard's awareness score): relays that did not even nack, refutations this
  node had to send, and timers that fired late count against us; each ack counts for us. The
  score stretches the probe interval and every timeout, so a slow node accuses less.
- Lost connections: the driver's hint that a connection dropped starts a probe at once, and a
  suspicion of a member whose connection is gone (and that has not spoken since) starts at
  ``_LOST_CONNECTION_FACTOR`` of the usual minimum. A killed process has its connections
  closed by its kernel; a stopped or slow one keeps them, and gets the full time to refute.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Iterator

from bzzz_edge.errors import RemoteProtocolError
from bzzz_edge.membership._config import MembershipConfig, min_suspicion_timeout
from bzzz_edge.membership._messages import (
    Ack,
    Message,
    Nack,
    Ping,
    PingReq,
    Status,
    SuspectUpdate,
    Update,
)
from bzzz_edge.membership._probe import PendingProbe, PendingRelay
from bzzz_edge.membership._rtt import RttTable
from bzzz_edge.membership._table import LIVE, MemberTable

__all__ = ["FailureDetector"]

# Pending ping-req relays beyond this are refused with an immediate nack, so a peer flooding
# ping-reqs cannot grow our state without bound.
_MAX_RELAYS = 1024
# A suspicion of a member whose connection closed and whose probe then failed starts at this
# fraction of the usual minimum (see the module docstring).
_LOST_CONNECTION_FACTOR = 0.5
# Failed probes remembered so that a late ack still yields a round-trip sample.
_MAX_ENDED = 64


class FailureDetector:
    """Probing state of one node. See the module docstring.

    Args:
        send: queues a message to a member (the core's output).
        next_seq: a fresh sequence number for a ping.
    """

    def __init__(
        self,
        config: MembershipConfig,
        table: MemberTable,
        rng: random.Random,
        counters: Counter[str],
        send: Callable[[bytes, Message], None],
        next_seq: Callable[[], int],
        now: float,
    ) -> None:
        self._config = cfg = config
        self._table = table
        self._rng = rng
        self._counters = counters
        self._send = send
        self._next_seq = next_seq
        self.rtt = RttTable(
            cfg.probe_timeout_min, cfg.probe_timeout_max, cfg.probe_timeout_initial, cfg.max_members
        )
        self.awareness = 0
        # Random phase, so nodes started together do not probe in lockstep.
        self.next_probe = now + rng.uniform(0, cfg.probe_interval)
        self._probes: dict[int, PendingProbe] = {}
        self._probing: dict[bytes, int] = {}
        self._relays: dict[int, PendingRelay] = {}
        # Failed probes whose ack or relays' nacks may still come (oldest first): sequence ->
        # (target, sent, the relays whose nack had not come when the probe ended).
        self._ended: dict[int, tuple[bytes, float, set[bytes]]] = {}
        # Members whose connection the driver reported lost and that we have not heard since.
        self._lost: set[bytes] = set()
        # Where the last late tick put off verdicts to: none is put off twice.
        self._deferred_to = -math.inf

    def deadlines(self) -> Iterator[float]:
        """Every probe and relay deadline (the probe round itself is ``next_probe``)."""
        for probe in self._probes.values():
            yield probe.end_deadline if probe.indirect_sent else probe.direct_deadline
        for relay in self._relays.values():
            yield relay.deadline

    def check(self, now: float) -> None:
        """Expire relays and probes that are due."""
        for seq, relay in list(self._relays.items()):
            if now >= relay.deadline:
                del self._relays[seq]
                self._send(relay.requester, Nack(relay.requester_seq, self._piggyback(relay)))
        for seq, probe in list(self._probes.items()):
            if now >= probe.end_deadline:
                self._probe_failed(seq, probe, now)
            elif not probe.indirect_sent and now >= probe.direct_deadline:
                self._send_ping_reqs(seq, probe, now)

    def probe_round(self, now: float) -> None:
        """Probe the next member in the order (when ``next_probe`` is due)."""
        self.next_probe = now + self._config.probe_interval * (self.awareness + 1)
        table = self._table
        target = table.order.next(lambda node: table[node].status in LIVE)
        if target is not None and target not in self._probing:
            self._start_probe(target, now)

    def late(self, now: float) -> None:
        """Our timer fired late: the event loop was starved (a busy CPU, swapping, a pause).

        Acks, nacks and refutations may be waiting unread, so verdicts that fell due meanwhile
        (probes, relays, suspicions) are put off a little (Lifeguard: a starved node delays
        suspicion rather than producing it), and the node counts it against its own health.
        Each verdict is put off once at most: by its new deadline the loop has run and read
        what was queued, so a node that is late all the time still reaches its verdicts, only
        later.
        """
        self._counters["late_ticks"] += 1
        self.adjust_health(1)
        floor, until = self._deferred_to, now + self._config.late_timer_threshold
        self._deferred_to = until
        for probe in self._probes.values():
            if floor < probe.end_deadline <= now:
                probe.end_deadline = until
            if not probe.indirect_sent and floor < probe.direct_deadline <= now:
                probe.direct_deadline = until
        for relay in self._relays.values():
            if floor < relay.deadline <= now:
                relay.deadline = until
        for suspicion in self._table.suspicions.values():
            if floor < suspicion.deadline <= now:
                suspicion.deadline = until

    def suspicion_bounds(self, node: bytes, n: int) -> tuple[float, float]:
        """The (minimum, maximum) suspicion timeout of ``node`` in a cluster of ``n``."""
        low = min_suspicion_timeout(self._config, n, self.rtt.timeout(node))
        if node in self._lost:
            low *= _LOST_CONNECTION_FACTOR
        return low, low * self._config.suspicion_max_timeout_mult

    def adjust_health(self, delta: int) -> None:
        ceiling = self._config.awareness_max_multiplier - 1
        self.awareness = min(max(self.awareness + delta, 0), ceiling)

    # --- events ---------------------------------------------------------------------------------

    def connection_lost(self, node: bytes, now: float) -> None:
        self._lost.add(node)
        if node not in self._probing:
            self._counters["hint_probes"] += 1
            self._start_probe(node, now)

    def heard(self, node: bytes) -> None:
        """``node`` spoke to us, or we connected to it: its connection is not lost."""
        self._lost.discard(node)

    def forget(self, node: bytes) -> None:
        self.rtt.forget(node)
        self._lost.discard(node)

    def stop_probing(self, node: bytes) -> None:
        """End a probe of ``node`` in flight (it was forced out: no verdict is wanted)."""
        seq = self._probing.get(node)
        if seq is not None:
            self._end_probe(seq, self._probes[seq])

    def clear(self) -> None:
        """Stop probing (this node left)."""
        self._probes.clear()
        self._probing.clear()
        self._relays.clear()

    def on_ping_req(self, sender: bytes, message: PingReq, now: float) -> None:
        table = self._table
        if message.target not in table or len(self._relays) >= _MAX_RELAYS:
            self._counters["relays_refused"] += 1
            self._send(sender, Nack(message.seq, table.piggyback(sender)))
            return
        seq = self._next_seq()
        deadline = now + self.rtt.timeout(message.target) * (self.awareness + 1)
        self._relays[seq] = PendingRelay(sender, message.seq, message.target, deadline)
        self._send(message.target, Ping(seq, message.target, table.piggyback(message.target)))

    def on_ack(self, sender: bytes, message: Ack, now: float) -> None:
        relay = self._relays.get(message.seq)
        if relay is not None:
            if sender != relay.target:
                raise RemoteProtocolError("ack for a relayed ping from a node that was not pinged")
            del self._relays[message.seq]
            self._send(relay.requester, Ack(relay.requester_seq, self._piggyback(relay)))
            return
        probe = self._probes.get(message.seq)
        if probe is None:
            self._counters["late_acks"] += 1
            ended = self._ended.get(message.seq)
            if ended is not None and ended[0] == sender:
                del self._ended[message.seq]
                # Too late for its probe, but the sequence number is fresh, so the round trip
                # it measures is unambiguous: exactly the sample a slowed-down link needs.
                self.rtt.sample(sender, now - ended[1])
            return
        if sender != probe.target and sender not in probe.relays:
            raise RemoteProtocolError("ack from a node that was neither probed nor asked to relay")
        if sender == probe.target:
            self.rtt.sample(sender, now - probe.sent)
        self._end_probe(message.seq, probe)
        self.adjust_health(-1)

    def on_nack(self, sender: bytes, message: Nack) -> None:
        probe = self._probes.get(message.seq)
        if probe is None or sender not in probe.relays:
            self._counters["late_nacks"] += 1
            ended = self._ended.get(message.seq)
            if ended is not None and sender in ended[2]:
                # The relay did answer, after we stopped waiting: its own timeout for the
                # target was longer than our estimate of it (it had not measured the target
                # yet, say), which says nothing about our link: take back its missed nack.
                ended[2].discard(sender)
                self.adjust_health(-1)
            return
        probe.nacks.add(sender)

    # --- probes ---------------------------------------------------------------------------------

    def _piggyback(self, relay: PendingRelay) -> tuple[Update, ...]:
        return self._table.piggyback(relay.requester)

    def _start_probe(self, target: bytes, now: float) -> None:
        seq = self._next_seq()
        timeout = self.rtt.timeout(target) * (self.awareness + 1)
        self._probes[seq] = PendingProbe(
            target,
            self._table[target].incarnation,
            sent=now,
            direct_deadline=now + timeout,
            # Without relays to ask, the probe ends one more timeout after the direct one.
            end_deadline=now + 2 * timeout,
        )
        self._probing[target] = seq
        self._counters["probes"] += 1
        self._send(target, Ping(seq, target, self._table.piggyback(target)))

    def _end_probe(self, seq: int, probe: PendingProbe) -> None:
        del self._probes[seq]
        if self._probing.get(probe.target) == seq:
            del self._probing[probe.target]

    def _send_ping_reqs(self, seq: int, probe: PendingProbe, now: float) -> None:
        probe.indirect_sent = True
        target = probe.target
        table = self._table
        probe.relays = tuple(
            table.order.sample(
                self._rng,
                self._config.indirect_checks,
                lambda node: node != target and table[node].status is Status.ALIVE,
            )
        )
        # A relay waits its own timeout for the target, and its answer needs a round trip
        # back: allow our estimate of the first plus the slowest relay's timeout.
        slowest = max((self.rtt.timeout(relay) for relay in probe.relays), default=0.0)
        wait = (self.rtt.timeout(target) + slowest) * (self.awareness + 1)
        probe.end_deadline = max(probe.end_deadline, now + wait)
        self._counters["indirect_probes"] += 1
        for relay in probe.relays:
            self._send(relay, PingReq(seq, target, table.piggyback(relay)))

    def _probe_failed(self, seq: int, probe: PendingProbe, now: float) -> None:
        self._end_probe(seq, probe)
        self.rtt.back_off(probe.target)
        silent = set(probe.relays) - probe.nacks
        self._ended[seq] = (probe.target, probe.sent, silent)
        if len(self._ended) > _MAX_ENDED:
            del self._ended[next(iter(self._ended))]
        self._counters["probe_failures"] += 1
        # Relays that did not even nack point at our own link or load (Lifeguard); with no
        # relays to ask, the failed probe itself counts against us. (A nack that comes later
        # takes its part back: ``on_nack``.)
        self.adjust_health(len(silent) if probe.relays else 1)
        member = self._table.get(probe.target)
        if member is not None and member.status in LIVE:
            # Suspect the incarnation we probed: if the member refuted or restarted meanwhile,
            # this is stale news and changes nothing.
            suspicion = SuspectUpdate(probe.target, probe.incarnation, self._table.self_id)
            self._table.apply(suspicion, now)
            # A lost connection counts once: the next suspicion needs a fresh hint.
            self._lost.discard(probe.target)
