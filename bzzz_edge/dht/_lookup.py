"""The iterative lookup: alpha parallel RPCs over disjoint paths, bounded in time. No I/O.

A ``Lookup`` finds the ``k`` nodes closest to a target. It does not send anything itself: the
node core asks it which contacts to query (``next_queries``), tells it of each answer
(``on_reply``) or failure (``on_failure``), and calls ``tick`` when ``next_deadline`` passes.

- Disjoint paths (S/Kademlia): the seeds are dealt out to ``disjoint_paths`` paths, nearest
  first; each path runs its own lookup with ``alpha`` RPCs in flight, and a node belongs to the
  first path that heard of it, so no node is queried twice and a liar on one path cannot steer
  the others. The result merges all paths.
- An RPC unanswered after ``rpc_timeout`` fails (the node core keeps the timers and says so
  with ``on_failure``): its slot goes to the next candidate at once, the peer is asked once more
  later (a lost message is not a dead peer), and a second timeout drops it from the lookup's
  set (a late answer is ignored), so a slow peer costs two timeouts, not the lookup. A path
  ends when the ``k`` nearest live candidates it knows have all answered.
- Whatever happens, the lookup ends at ``lookup_deadline`` with what it has.
- A narrow start (``narrow``, for gets, which end at the first answer with a valid record):
  the first RPC goes only to the nearest seed, most likely one of the nodes holding the
  record. An answer without the value that names a node nearer than the one that answered
  (it knew the holders we did not) is followed the same way: the nearest candidate alone.
  The lookup widens to ``alpha`` per path when an answer names no nearer node, an RPC fails,
  or ``hedge_delay`` passes with no answer. A hit costs one RPC instead of
  ``disjoint_paths * alpha``, a hit one step away two; a slow nearest node costs
  ``hedge_delay`` more.

State is bounded: each answer adds at most ``k`` contacts (the nearest it names), and a path
holds at most ``_MAX_CANDIDATES_PER_PATH`` candidates (the farthest unqueried ones are dropped).
"""

from __future__ import annotations

import bisect
import enum
import math
from dataclasses import dataclass
from operator import attrgetter, itemgetter

from bzzz_edge.dht._config import DhtConfig
from bzzz_edge.dht._contact import Contact

__all__ = ["Lookup", "LookupResult"]

_MAX_CANDIDATES_PER_PATH = 256
_TRIES = 2
_by_distance = attrgetter("distance")


class _State(enum.Enum):
    FRESH = 0
    WAITING = 1
    ANSWERED = 2
    FAILED = 3


class _Candidate:
    __slots__ = ("contact", "distance", "hops", "path", "sent_at", "state", "tries")

    def __init__(self, contact: Contact, distance: int, path: int, hops: int) -> None:
        self.contact = contact
        self.distance = distance
        self.path = path
        self.hops = hops
        self.state = _State.FRESH
        self.sent_at = 0.0
        self.tries = 0


@dataclass(frozen=True, slots=True)
class LookupResult:
    """How a lookup ended.

    Attributes:
        closest: the nearest nodes that answered, nearest first (at most k).
        hops: RPC rounds from us to the nearest of them (1: a seed we knew).
        queried: RPCs sent (a retry counts); answered, failed: their outcomes (the rest were
            in flight or retried).
        timed_out: the deadline ended the lookup.
    """

    closest: tuple[Contact, ...]
    hops: int
    queried: int
    answered: int
    failed: int
    timed_out: bool


class Lookup:
    """One iterative lookup for ``target``. See the module docstring.

    Args:
        self_id: this node (never a candidate).
        target: the ID looked for.
        seeds: contacts to start from (the routing table's nearest).
        config: ``k``, ``alpha``, ``disjoint_paths``, ``rpc_timeout``, ``lookup_deadline``.
        now: the current time; the deadline counts from it.
        narrow: start with one RPC to the nearest seed (see the module docstring).
    """

    def __init__(self, self_id: bytes, target: bytes, seeds: list[Contact], config: DhtConfig,
                 now: float, *, narrow: bool = False) -> None:
        self.target = target
        self._self_id = self_id
        self._goal = int.from_bytes(target, "big")
        self._config = config
        self.deadline = now + config.lookup_deadline
        self._candidates: dict[bytes, _Candidate] = {}
        goal, from_bytes = self._goal, int.from_bytes
        ordered = sorted([(from_bytes(c.node, "big") ^ goal, c) for c in seeds
                          if c.node != self_id], key=itemgetter(0))
        self._paths = max(1, min(config.disjoint_paths, len(ordered)))
        self._by_path: list[list[_Candidate]] = [[] for _ in range(self._paths)]  # nearest first
        self._waiting = [0] * self._paths
        index = 0
        for distance, contact in ordered:  # dealt out nearest first: each path stays sorted
            if contact.node not in self._candidates:
                path = index % self._paths
                self._candidates[contact.node] = candidate = _Candidate(contact, distance, path, 1)
                self._by_path[path].append(candidate)
                index += 1
        self._queried = self._answered = self._failed = self._retried = 0
        self._finished = False
        self._timed_out = False
        self.value_hops = 0
        self._narrow = narrow and bool(seeds)
        self._asking: _Candidate | None = None  # while narrow: the one RPC in flight
        self._narrowest: float = math.inf  # while narrow: the distance of the last to answer
        # While narrow: when the lookup widens even without an answer (the hedge).
        self._widen_at: float | None = now + config.hedge_delay if self._narrow else None

    def _distance(self, contact: Contact) -> int:
        return int.from_bytes(contact.node, "big") ^ self._goal

    def _add(self, contact: Contact, path: int, hops: int) -> None:
        if contact.node == self._self_id or contact.node in self._candidates:
            return
        candidate = _Candidate(contact, self._distance(contact), path, hops)
        self._candidates[contact.node] = candidate
        bisect.insort(self._by_path[path], candidate, key=_by_distance)

    @property
    def finished(self) -> bool:
        return self._finished

    def finish(self) -> None:
        """End the lookup now (a value was found, or the operation was abandoned)."""
        self._finished = True

    def next_queries(self, now: float) -> list[Contact]:
        """Contacts to send the RPC to now; they count as in flight from ``now``."""
        if self._finished:
            return []
        if now >= self.deadline:
            self._finished = self._timed_out = True
            return []
        if self._narrow:
            query = self._narrow_query(now)
            if query is not None:
                return query
        out: list[Contact] = []
        active = False
        k, alpha = self._config.k, self._config.alpha
        for path, ordered in enumerate(self._by_path):
            waiting = self._waiting[path]
            live = 0
            for candidate in ordered:
                if live >= k:
                    break
                if candidate.state is _State.FAILED:
                    continue
                live += 1
                if candidate.state is _State.FRESH:
                    if waiting >= alpha:
                        active = True
                        break
                    candidate.state, candidate.sent_at = _State.WAITING, now
                    candidate.tries += 1
                    waiting += 1
                    out.append(candidate.contact)
            self._waiting[path] = waiting
            active = active or waiting > 0
            if len(ordered) > _MAX_CANDIDATES_PER_PATH:
                self._trim(ordered)
        self._queried += len(out)
        if not active:
            self._finished = True
        return out

    def _narrow_query(self, now: float) -> list[Contact] | None:
        """While narrow: the nearest candidate alone, or nothing while it is asked and the
        hedge has not passed; None once the lookup widened."""
        if self._asking is not None:
            if self._widen_at is not None and now < self._widen_at:
                return []
            self._widen()  # the hedge
            return None
        nearest = self._nearest_fresh()
        if nearest is None or nearest.distance > self._narrowest:
            self._widen()  # the last answer named no nearer node to follow
            return None
        nearest.state, nearest.sent_at = _State.WAITING, now
        nearest.tries += 1
        self._waiting[nearest.path] += 1
        self._queried += 1
        self._asking = nearest
        self._widen_at = now + self._config.hedge_delay
        return [nearest.contact]

    def _nearest_fresh(self) -> _Candidate | None:
        nearest: _Candidate | None = None
        for ordered in self._by_path:
            for candidate in ordered:  # each path's list is nearest first
                if candidate.state is _State.FRESH:
                    if nearest is None or candidate.distance < nearest.distance:
                        nearest = candidate
                    break
        return nearest

    def _widen(self) -> None:
        self._narrow = False
        self._asking = None
        self._widen_at = None

    def _trim(self, ordered: list[_Candidate]) -> None:
        for candidate in ordered[_MAX_CANDIDATES_PER_PATH:]:
            if candidate.state is _State.FRESH:
                del self._candidates[candidate.contact.node]
        ordered[_MAX_CANDIDATES_PER_PATH:] = [
            c for c in ordered[_MAX_CANDIDATES_PER_PATH:] if c.state is not _State.FRESH]

    def on_reply(self, node: bytes, contacts: tuple[Contact, ...] | list[Contact]) -> bool:
        """``node`` answered with ``contacts``; False if the answer is not wanted (late, or
        from a node this lookup did not ask)."""
        candidate = self._candidates.get(node)
        if candidate is None or candidate.state is not _State.WAITING or self._finished:
            return False
        candidate.state = _State.ANSWERED
        self._waiting[candidate.path] -= 1
        self._answered += 1
        nearest = sorted(contacts, key=self._distance)[: self._config.k]
        for contact in nearest:
            self._add(contact, candidate.path, candidate.hops + 1)
        if self._narrow:  # whom to ask next is settled by next_queries (a value ends a get)
            self._asking = self._widen_at = None
            self._narrowest = candidate.distance
        return True

    def hops_of(self, node: bytes) -> int:
        candidate = self._candidates.get(node)
        return candidate.hops if candidate is not None else 0

    def on_failure(self, node: bytes, *, timed_out: bool = False) -> bool:
        """The RPC to ``node`` failed (refused, connection lost, or ``timed_out``); True if it
        was ours. A peer's first timeout puts it back among the candidates, to be asked once
        more (a lost message is not a dead peer); any other failure drops it."""
        candidate = self._candidates.get(node)
        if candidate is None or candidate.state is not _State.WAITING:
            return False
        if self._narrow:
            self._widen()
        self._waiting[candidate.path] -= 1
        if timed_out and candidate.tries < _TRIES:
            candidate.state = _State.FRESH
            self._retried += 1
            return True
        candidate.state = _State.FAILED
        self._failed += 1
        return True

    def tick(self, now: float) -> None:
        """End the lookup if its deadline passed (RPC timeouts come in as ``on_failure``)."""
        if now >= self.deadline and not self._finished:
            self._finished = self._timed_out = True

    def next_deadline(self) -> float:
        return self.deadline if self._widen_at is None else min(self.deadline, self._widen_at)

    def result(self) -> LookupResult:
        answered = sorted([c for c in self._candidates.values() if c.state is _State.ANSWERED],
                          key=_by_distance)[: self._config.k]
        hops = self.value_hops or (answered[0].hops if answered else 0)
        return LookupResult(tuple(c.contact for c in answered), hops, self._queried,
                            self._answered, self._failed, self._timed_out)
