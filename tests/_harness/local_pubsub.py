"""An in-process stand-in for the node's pub/sub service, as the HTTP endpoints see it: real
subscriptions (``gossip._local.LocalTopics``, match filters included), deliveries put by the
test; and the node's real HTTP API served over it. Uses trio."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace

import trio

from bzzz_edge.api import ApiServer, create_app
from bzzz_edge.gossip._local import LocalTopics
from bzzz_edge.gossip.delivery import Delivery, Subscription


class LocalPubSub:
    def __init__(self) -> None:
        self.topics = LocalTopics(max_topics=4, subscriber_buffer=64,
                                  on_enter=lambda topic: None, on_left=lambda topic: None)

    def subscribe(self, topic: str, buffer: int | None = None, *,
                  matching: tuple[bytes, ...] = ()) -> Subscription:
        return self.topics.subscribe(topic, buffer, matching=matching)

    def put(self, topic: str, seq: int, data: bytes) -> None:
        for subscription in self.topics.subscribers(topic):
            subscription.put(Delivery(topic, bytes(32), seq, 0, 0, data))


@asynccontextmanager
async def served(pubsub: LocalPubSub, token: str = "k") -> AsyncIterator[tuple[str, ApiServer]]:
    """The node's HTTP API over ``pubsub`` on a free loopback port: (its URL, the server);
    the test stops the server."""
    app = create_app(SimpleNamespace(gossip=pubsub), token=token)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        server = ApiServer(app, "127.0.0.1:0")
        url = await nursery.start(server.run)
        yield url, server
