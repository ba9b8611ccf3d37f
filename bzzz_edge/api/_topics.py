"""Pub/sub over HTTP: publish, a Server-Sent Events stream of deliveries, topic counters.
Uses trio (the event stream waits on a subscription).

Endpoints (topic names percent-encoded in the path; ``/`` may stay as it is):
    POST /api/v1/topics/{topic}/messages   publish; the body is the message: raw bytes, or
                                           JSON {"data": text} or {"data_b64": base64} with
                                           Content-Type application/json. Answers
                                           {"id": "origin:seq", "origin", "seq", "topic"}; 400
                                           for a bad topic or body, 413 for a message too large
    GET  /api/v1/topics/{topic}/events     text/event-stream: one ``message`` event per
                                           delivery (``id: origin:seq``, data: the JSON object
                                           ``sub --json`` prints), a comment every 15 s while
                                           quiet; joins the topic while the stream is open.
                                           ``?match=TEXT`` (repeatable, at most
                                           ``MAX_MATCHES``, each 1 to ``MAX_MATCH_BYTES``
                                           bytes of UTF-8): only the messages whose data
                                           holds one of them (400 past those bounds)
    GET  /api/v1/topics                    {"topics": [...]}: every joined topic with its
                                           counters (delivered, duplicates, invalid, stale,
                                           queue drops, gaps, mesh peers...)
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator
from typing import Any, Protocol

import trio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import BzzzError
from ..gossip.bodies import MessageTooLarge
from ..gossip.delivery import Delivery, Published, Subscription
from ..gossip.topics import TopicError, check_topic
from ._streaming import TrioStreamingResponse

__all__ = ["MAX_MATCHES", "MAX_MATCH_BYTES", "PubSub", "TopicStreams", "topic_routes"]

_KEEPALIVE_S = 15.0
# An event stream's ``match`` filters: each delivery is checked against all of them, so a few
# short ones (the benchmark asks for two event types).
MAX_MATCHES = 8
MAX_MATCH_BYTES = 256


class PubSub(Protocol):
    """What the endpoints need of the node's pub/sub service."""

    def publish(self, topic: str, data: bytes) -> Published: ...

    def subscribe(self, topic: str, buffer: int | None = None, *,
                  matching: tuple[bytes, ...] = ()) -> Subscription: ...

    def topic_stats(self) -> list[dict[str, Any]]: ...


class TopicStreams:
    """The open event streams, so a stopping node ends them instead of waiting on them."""

    def __init__(self) -> None:
        self._open: set[Subscription] = set()

    def stream(self, subscription: Subscription) -> AsyncIterator[str]:
        self._open.add(subscription)

        async def events() -> AsyncIterator[str]:
            try:
                yield f": subscribed to {subscription.topic}\n\n"
                while True:
                    delivery: Delivery | None = None
                    with trio.move_on_after(_KEEPALIVE_S):  # never yield inside the scope
                        delivery = await subscription.receive()
                    if delivery is None:
                        yield ": keepalive\n\n"
                    else:
                        yield (f"id: {delivery.message_id}\nevent: message\n"
                               f"data: {json.dumps(delivery.as_json())}\n\n")
            except trio.EndOfChannel:
                return
            finally:
                self._open.discard(subscription)
                subscription.close()

        return events()

    def close_all(self) -> None:
        for subscription in list(self._open):
            subscription.close()
        self._open.clear()


def _matches(request: Request) -> tuple[bytes, ...]:
    """The stream's ``match`` filters, as bytes.

    Raises:
        BzzzError: too many, or one empty or too long.
    """
    matches = request.query_params.getlist("match")
    if len(matches) > MAX_MATCHES:
        raise BzzzError(f"at most {MAX_MATCHES} match filters, got {len(matches)}")
    encoded = tuple(m.encode("utf-8") for m in matches)
    for match in encoded:
        if not 0 < len(match) <= MAX_MATCH_BYTES:
            raise BzzzError(f"a match filter has 1 to {MAX_MATCH_BYTES} bytes, "
                            f"got {len(match)}")
    return encoded


def _error(status: int, message: str, path: str) -> JSONResponse:
    return JSONResponse({"error": message, "path": path}, status_code=status)


async def _message_data(request: Request, limit: int) -> bytes:
    """The message a publish request carries (raw, or JSON ``data`` / ``data_b64``).

    Raises:
        BzzzError: malformed JSON or base64, or neither field.
        MessageTooLarge: the body is far past any message size (read no further).
    """
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise MessageTooLarge(f"request body over {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return raw
    try:
        body = json.loads(raw)
    except ValueError:
        raise BzzzError("the request body is not JSON (send raw bytes without "
                        "Content-Type: application/json)") from None
    if isinstance(body, dict) and isinstance(body.get("data"), str):
        return str(body["data"]).encode("utf-8")
    if isinstance(body, dict) and isinstance(body.get("data_b64"), str):
        try:
            return base64.b64decode(body["data_b64"], validate=True)
        except binascii.Error:
            raise BzzzError("data_b64 is not valid base64") from None
    raise BzzzError('expected {"data": text} or {"data_b64": base64}')


def topic_routes(node: Any, streams: TopicStreams) -> list[Route]:
    """The routes above; ``node.gossip`` is the pub/sub service (None until peering runs)."""

    def service(path: str) -> PubSub | JSONResponse:
        pubsub = getattr(node, "gossip", None)
        if pubsub is None:
            return _error(503, "pub/sub is not running yet", path)
        return pubsub  # type: ignore[no-any-return]

    async def publish(request: Request) -> Response:
        path = request.url.path
        pubsub = service(path)
        if isinstance(pubsub, JSONResponse):
            return pubsub
        try:
            topic = check_topic(request.path_params["topic"])
            data = await _message_data(request, 64 * 1024 * 1024)
            published = pubsub.publish(topic, data)
        except MessageTooLarge as exc:
            return _error(413, f"publish: {exc}", path)
        except (TopicError, BzzzError) as exc:
            return _error(400, f"publish: {exc}", path)
        message_id = published.message_id
        return JSONResponse({"id": message_id, "origin": message_id.rpartition(":")[0],
                             "seq": published.seq, "topic": topic})

    async def events(request: Request) -> Response:
        path = request.url.path
        pubsub = service(path)
        if isinstance(pubsub, JSONResponse):
            return pubsub
        try:
            topic = check_topic(request.path_params["topic"])
            matching = _matches(request)
            subscription = pubsub.subscribe(topic, matching=matching)
        except BzzzError as exc:
            return _error(400, f"events: {exc}", path)
        return TrioStreamingResponse(streams.stream(subscription), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})

    async def topics(request: Request) -> Response:
        pubsub = service(request.url.path)
        if isinstance(pubsub, JSONResponse):
            return pubsub
        return JSONResponse({"topics": pubsub.topic_stats()})

    return [
        Route("/api/v1/topics", topics),
        Route("/api/v1/topics/{topic:path}/messages", publish, methods=["POST"]),
        Route("/api/v1/topics/{topic:path}/events", events),
    ]
