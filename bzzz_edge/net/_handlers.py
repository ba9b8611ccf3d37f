"""The table of who handles what arrives on a connection: envelope types and RPC methods.

No I/O. Services register here at start (``ConnectionManager.on_envelope`` and
``on_rpc``); connections look their inbound messages up here and call the handler directly.
Envelope handlers are synchronous and run in the connection's reader, one message after the
other, so a peer's messages are handled in order, a flood from one peer is slowed by its own
TCP window rather than queued in our memory, and every peer's reader takes its turn.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ..wire.envelope import Envelope
from ..wire.types import EnvelopeType, Layer

__all__ = ["EnvelopeHandler", "Handlers", "RpcHandler"]

#: ``handler(peer_id, envelope)``; must not block. Raising closes that peer's connection.
EnvelopeHandler = Callable[[bytes, Envelope], None]
#: ``await handler(peer_id, body) -> answer``; a BzzzError becomes an error answer.
RpcHandler = Callable[[bytes, bytes], Awaitable[bytes]]


@dataclass(frozen=True, slots=True)
class RpcMethod:
    handler: RpcHandler
    inline: bool  # run in the reader (never waits on the network): saves a task per request


@dataclass(slots=True)
class Handlers:
    envelopes: dict[tuple[str, int], EnvelopeHandler] = field(default_factory=dict)
    methods: dict[str, RpcMethod] = field(default_factory=dict)
    failures: Counter[str] = field(default_factory=Counter)  # handler bugs, by envelope type

    def on_envelope(self, kind: EnvelopeType, handler: EnvelopeHandler) -> None:
        if kind.layer != Layer.SERVICE:
            raise ValueError(f"{kind} is handled by the connection itself")
        if kind.key in self.envelopes:
            raise ValueError(f"{kind} already has a handler")
        self.envelopes[kind.key] = handler

    def on_rpc(self, method: str, handler: RpcHandler, *, inline: bool = False) -> None:
        if method in self.methods:
            raise ValueError(f"RPC method {method!r} already has a handler")
        self.methods[method] = RpcMethod(handler, inline)

    def envelope_handler(self, envelope: Envelope) -> EnvelopeHandler | None:
        return self.envelopes.get(envelope.kind)
