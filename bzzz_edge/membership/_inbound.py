"""Messages from peers: decoded, checked, handed to the part of the core that acts on them,
and the sender charged for what no honest member sends. No I/O.

Owned by the membership core (``_swim.Membership``) like the failure detector and the state
exchange: the core hands it every ``Received`` event; what it sends goes through the core's
``send``, penalties into the core's output list.

- A message that does not decode (a field out of range, metadata or a full state beyond the
  limits) is counted as ``malformed`` and costs the sender a strike (``Penalise``).
- A message carrying news with an implausible incarnation (``_limits``) has that news dropped
  and counted as ``implausible_incarnations`` by the table; the rest of the message stands,
  and the sender gets one strike for the message.
- A well-formed message that breaks the protocol is counted as ``protocol_errors``, without a
  strike: a stray ack that matches a sequence number by chance (from a peer's previous life)
  is one an honest peer can cause.
- A message of a kind or version we do not know is counted and ignored, as is everything after
  this node left.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from bzzz_edge.errors import DecodeError, LocalProtocolError, RemoteProtocolError
from bzzz_edge.ids import short_id
from bzzz_edge.membership._detector import FailureDetector
from bzzz_edge.membership._dissemination import Dissemination
from bzzz_edge.membership._events import Action, Offence, Penalise, Received
from bzzz_edge.membership._exchange import StateExchange
from bzzz_edge.membership._messages import (
    Ack,
    Address,
    Gossip,
    Message,
    Nack,
    Ping,
    PingReq,
    Status,
    Sync,
    UnknownMessage,
    check_node_id,
    decode_message,
)
from bzzz_edge.membership._table import MemberTable

__all__ = ["Inbound"]

_log = logging.getLogger(__name__)

_MESSAGE_TYPES = (Ping, PingReq, Ack, Nack, Gossip, Sync)


class Inbound:
    """Messages from peers into one node's membership core. See the module docstring.

    Args:
        send: queues a message to a member (the core's output).
        out: the core's output list; penalties are appended to it.
    """

    def __init__(
        self,
        self_id: bytes,
        table: MemberTable,
        detector: FailureDetector,
        exchange: StateExchange,
        dissemination: Dissemination,
        counters: Counter[str],
        send: Callable[[bytes, Message, Address | None], None],
        out: list[Action],
    ) -> None:
        self._self_id = self_id
        self._table = table
        self._detector = detector
        self._exchange = exchange
        self._dissemination = dissemination
        self._counters = counters
        self._send = send
        self._out = out

    def receive(self, event: Received, now: float) -> None:
        """Handle what ``event.sender`` sent.

        Raises:
            LocalProtocolError: the driver passed a sender that is not a node ID.
        """
        try:
            sender = check_node_id(event.sender, "sender")
        except DecodeError as exc:
            raise LocalProtocolError(str(exc)) from exc
        payload = event.payload
        implausible = self._counters["implausible_incarnations"]
        try:
            message = payload if isinstance(payload, _MESSAGE_TYPES) else decode_message(payload)
            if isinstance(message, UnknownMessage):
                self._counters["unknown_messages"] += 1
                return
            if self._table.left:
                self._counters["ignored_after_leave"] += 1
                return
            if sender == self._self_id:
                raise RemoteProtocolError("message claims to come from this node")
            self._detector.heard(sender)
            self._dispatch(sender, message, now)
            if sender in self._table:
                self._table.heard_from(sender)
        except DecodeError as exc:
            self._counters["malformed"] += 1
            self._out.append(Penalise(sender, Offence.MALFORMED))
            _log.debug("dropped malformed membership message from %s: %s", short_id(sender), exc)
            return
        except RemoteProtocolError as exc:
            # No strike: a stray ack matching a sequence number by chance (a peer's previous
            # life) is a protocol error an honest peer can cause.
            self._counters["protocol_errors"] += 1
            _log.debug("dropped membership message from %s: %s", short_id(sender), exc)
            return
        if self._counters["implausible_incarnations"] > implausible:
            # The implausible news was dropped (``_table``); the rest of the message stands.
            self._out.append(Penalise(sender, Offence.IMPLAUSIBLE_INCARNATION))

    def _dispatch(self, sender: bytes, message: Message, now: float) -> None:
        if isinstance(message, Sync):
            self._exchange.on_sync(sender, message, now)
            return
        if isinstance(message, Ping) and message.target != self._self_id:
            raise RemoteProtocolError("ping addressed to another node")
        if isinstance(message, PingReq) and message.target in (self._self_id, sender):
            raise RemoteProtocolError("ping-req asks to probe this node or its own sender")
        self._dissemination.apply_all(sender, message.updates, now)
        sender_state = self._table.get(sender)
        if sender_state is None or sender_state.status is Status.DEAD:
            # A member we do not know, or hold dead, is talking to us: the news that should
            # have told us passed us by, or it does not know it was declared dead. Exchange
            # full state with it, as on a join. (A departed member's last words need none.)
            self._exchange.join(sender, None, now)
        if isinstance(message, Ping):
            self._send(sender, Ack(message.seq, self._table.piggyback(sender)), None)
        elif isinstance(message, PingReq):
            self._detector.on_ping_req(sender, message, now)
        elif isinstance(message, Ack):
            self._detector.on_ack(sender, message, now)
        elif isinstance(message, Nack):
            self._detector.on_nack(sender, message)
