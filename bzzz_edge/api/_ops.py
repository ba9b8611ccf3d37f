"""Operator endpoints: join, leave, force-leave, reload, and the log monitor stream.

Uses trio for the monitor (log lines reach the event loop through its token); the actions
themselves are the node's (``ApiNode``), so this module only checks input and shapes answers.

Endpoints:
    POST /api/v1/join          {"address": "host:port"}: dial a peer now
    POST /api/v1/leave         graceful stop, ``left`` announced (what SIGTERM does)
    POST /api/v1/force-leave   {"node": "<node ID>"}: mark a dead or retired peer departed
    POST /api/v1/reload        re-read the config (what SIGHUP does)
    GET  /api/v1/monitor       ?level=debug|info|warning|error: log lines as they happen,
                               one JSON object per line (chunked, application/x-ndjson)
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import trio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..config import parse_hostport
from ..errors import BzzzError
from ..identity import parse_node_id
from ..logs import LEVELS, broadcast
from ._streaming import TrioStreamingResponse

__all__ = ["Answer", "MonitorStreams", "answer_response", "error_response", "json_answer",
           "operator_routes"]

#: A response as bytes: ``(status, headers, body)`` (what the server's fast path sends).
Answer = tuple[int, list[tuple[bytes, bytes]], bytes]

_MONITOR_BUFFER = 2048  # lines held for a slow reader before lines are dropped (and counted)


def error_response(status: int, message: str, path: str, **headers: str) -> JSONResponse:
    """Every error the API gives has this shape: ``{"error": ..., "path": ...}``."""
    return JSONResponse({"error": message, "path": path}, status_code=status, headers=headers)


def json_answer(status: int, content: object) -> Answer:
    """What ``JSONResponse(content, status)`` sends, as bytes (the endpoints the server also
    answers without ASGI build their answers with it, so both paths send the same)."""
    body = json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None,
                      separators=(",", ":")).encode()
    return status, [(b"content-length", str(len(body)).encode()),
                    (b"content-type", b"application/json")], body


def answer_response(answer: Answer) -> Response:
    """An ``Answer`` as a Starlette response (the same bytes)."""
    status, headers, body = answer
    response = Response(body, status_code=status)
    response.raw_headers = list(headers)  # as given, in their order
    return response


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        raise BzzzError("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise BzzzError("the request body must be a JSON object")
    return body


class MonitorStreams:
    """The open monitor streams, so a stopping node can end them instead of waiting on them."""

    def __init__(self) -> None:
        self._channels: set[trio.MemorySendChannel[str]] = set()

    def open(self, level: str) -> AsyncIterator[str]:
        send, receive = trio.open_memory_channel[str](_MONITOR_BUFFER)
        token = trio.lowlevel.current_trio_token()
        dropped = 0

        def put(line: str) -> None:
            nonlocal dropped
            try:
                if dropped:
                    send.send_nowait(json.dumps({"ts": time.time(), "level": "warning",
                                                 "logger": "bzzz_edge.api",
                                                 "msg": f"monitor dropped {dropped} lines"}))
                    dropped = 0
                send.send_nowait(line)
            except trio.WouldBlock:
                dropped += 1
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                pass

        def deliver(line: str) -> None:  # any thread
            with contextlib.suppress(trio.RunFinishedError):  # the node has stopped
                token.run_sync_soon(put, line)

        unsubscribe = broadcast.subscribe(level, deliver)
        self._channels.add(send)

        async def lines() -> AsyncIterator[str]:
            try:
                async with receive:
                    async for line in receive:
                        yield line + "\n"
            finally:
                unsubscribe()
                self._channels.discard(send)
                send.close()

        return lines()

    def close_all(self) -> None:
        for channel in list(self._channels):
            channel.close()
        self._channels.clear()


def operator_routes(node: Any, monitors: MonitorStreams) -> list[Route]:
    """The routes above, for ``node`` (an ``ApiNode``)."""

    async def join(request: Request) -> Response:
        path = request.url.path
        try:
            address = (await _json_body(request)).get("address")
            if not isinstance(address, str):
                raise BzzzError('expected {"address": "host:port"}')
            host, port = parse_hostport(address)
        except (BzzzError, ValueError) as exc:
            return error_response(400, f"join: {exc}", path)
        joined = await node.join((host, port))
        if joined is None:
            return error_response(504, f"join: no node answered at {address} yet; "
                                  "still dialling with backoff", path)
        return JSONResponse({"joined": joined, "address": address})

    async def leave(request: Request) -> Response:
        node.leave()
        return JSONResponse({"leaving": True}, status_code=202)

    async def force_leave(request: Request) -> Response:
        path = request.url.path
        try:
            text = (await _json_body(request)).get("node")
            if not isinstance(text, str):
                raise BzzzError('expected {"node": "<node ID>"}')
            node_id = parse_node_id(text)
        except BzzzError as exc:
            return error_response(400, f"force-leave: {exc}", path)
        try:
            return JSONResponse(node.force_leave(node_id))
        except BzzzError as exc:
            return error_response(404, f"force-leave: {exc}", path)

    async def reload(request: Request) -> Response:
        result = node.reload_config()
        if result.get("error"):
            return error_response(400, f"reload failed, running config kept: {result['error']}",
                                  request.url.path)
        return JSONResponse(result)

    async def monitor(request: Request) -> Response:
        level = request.query_params.get("level", "info").lower()
        if level not in LEVELS:
            return error_response(400, f"monitor: level {level!r}: expected one of "
                                  f"{', '.join(LEVELS)}", request.url.path)
        return TrioStreamingResponse(monitors.open(level), media_type="application/x-ndjson",
                                 headers={"Cache-Control": "no-cache"})

    return [
        Route("/api/v1/join", join, methods=["POST"]),
        Route("/api/v1/leave", leave, methods=["POST"]),
        Route("/api/v1/force-leave", force_leave, methods=["POST"]),
        Route("/api/v1/reload", reload, methods=["POST"]),
        Route("/api/v1/monitor", monitor),
    ]
