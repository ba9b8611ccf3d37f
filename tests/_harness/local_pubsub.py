"""An in-process stand-in for the node's pub/sub service, as the HTTP endpoints see it: real
subscriptions (``gossip._local.LocalTopics``, match filters included), deliveries put by the
test. No I/O."""

from __future__ import annotations

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
