"""Coordination over HTTP: who the coordinator is, proposals, the committed decision log.
Uses trio (a proposal waits for its commit on the node's event loop).

Endpoints:
    GET  /api/v1/coordination           leader (node ID or null), term, commit index, voters,
                                        learners, this node's state, each member's progress
    POST /api/v1/coordination/propose   ``{"data": text}`` or ``{"data_hex": hex}`` (and
                                        optionally ``"timeout"`` seconds): ``{"index", "term"}``
                                        once committed; on failure ``{"error", "reason",
                                        "leader"}`` with 503 (no quorum), 504 (timeout: it may
                                        still commit), 409 (lost in a leader change) or 413
                                        (refused: too large, backlog full)
    GET  /api/v1/coordination/log       ``?start=I&limit=N``: committed entries still held
    POST /api/v1/coordination/bench     ``{"proposers": 32, "seconds": 5, "size": 64}``: that
                                        many concurrent proposers on this node (forwarding as
                                        any proposal) for that long; ``{"commits",
                                        "commits_per_s", "failed", "p50_ms", "p99_ms"}``. The
                                        commands are committed to the log like any other.
"""

from __future__ import annotations

import json
import time
from typing import Any

import trio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ..consensus.proposals import Failure, ProposalError
from ..ids import format_node_id
from ._ops import Answer, error_response, json_answer

__all__ = ["PROPOSE_PATH", "coordination_routes", "propose_answer"]

PROPOSE_PATH = "/api/v1/coordination/propose"

_STATUS = {Failure.NO_QUORUM: 503, Failure.NOT_LEADER: 503, Failure.TIMEOUT: 504,
           Failure.LOST: 409, Failure.REFUSED: 413}
_MAX_LIMIT = 10000
_MAX_PROPOSERS = 256


async def _bench(service: Any, proposers: int, seconds: float, size: int) -> dict[str, Any]:
    """Concurrent proposers on this node for ``seconds``: what `bzzz-edge bench` reports."""
    took: list[float] = []
    failed = 0
    stamp = f"{time.time_ns():x}"

    async def proposer(number: int) -> None:
        nonlocal failed
        sequence = 0
        while True:
            sequence += 1
            command = f"bench-{stamp}-{number}-{sequence}-".encode().ljust(size, b".")
            began = trio.current_time()
            try:
                await service.propose(command)
            except ProposalError:
                failed += 1
            else:
                took.append(trio.current_time() - began)

    began = trio.current_time()
    async with trio.open_nursery() as nursery:
        for number in range(proposers):
            nursery.start_soon(proposer, number)
        await trio.sleep(seconds)
        nursery.cancel_scope.cancel()
    elapsed = trio.current_time() - began
    ordered = sorted(took)

    def pct(q: float) -> float | None:
        return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000, 3) \
            if ordered else None

    return {"commits": len(took), "commits_per_s": round(len(took) / elapsed, 1),
            "failed": failed, "p50_ms": pct(0.5), "p99_ms": pct(0.99)}


def _command(raw: bytes) -> tuple[bytes, float | None]:
    """A proposal's command and timeout from its JSON body.

    Raises:
        ValueError: the body is not what ``propose`` takes (the message says what is wrong).
    """
    body = json.loads(raw or b"{}")
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    if isinstance(body.get("data"), str):
        command = body["data"].encode()
    elif isinstance(body.get("data_hex"), str):
        command = bytes.fromhex(body["data_hex"])
    else:
        raise ValueError('expected {"data": text} or {"data_hex": hex}')
    timeout = body.get("timeout")
    if timeout is not None and (not isinstance(timeout, int | float) or
                                not 0 < timeout <= 3600):
        raise ValueError("timeout: expected seconds, more than 0 and at most 3600")
    return command, timeout


class _Propose:
    """``POST /api/v1/coordination/propose`` as a plain ASGI app, not a Starlette endpoint:
    the hottest request of the API (every proposal made over HTTP), where Starlette's
    ``Request``, ``JSONResponse`` and per-request exception wrapper cost a lone coordinator 7%
    of a proposal's CPU (280 us became 260 under 32 proposers; bench_raft_ab.py's way). The
    answers are the same bytes (``JSONResponse``'s compact JSON, its two headers); what raises
    still reaches the app's error middlewares around the router."""

    def __init__(self, node: Any) -> None:
        self._node = node

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if getattr(self._node, "consensus", None) is None:  # (answered without the body)
            status, headers, body = await propose_answer(self._node, b"", scope["path"])
        else:
            chunks = []
            while True:
                message = await receive()
                if message["type"] != "http.request":  # http.disconnect: nobody to answer
                    return
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            status, headers, body = await propose_answer(self._node, b"".join(chunks),
                                                         scope["path"])
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def propose_answer(node: Any, raw: bytes, path: str = PROPOSE_PATH) -> Answer:
    """The answer to a proposal with body ``raw`` as ``(status, headers, body)``: the bytes
    ``JSONResponse`` (and ``error_response``) would send. Both ``_Propose`` and the server's
    fast path (``_server.FastPost``) answer with it."""
    service = getattr(node, "consensus", None)
    if service is None:
        return json_answer(503, {"error": "coordination is not running", "path": path})
    try:
        command, timeout = _command(raw)
    except ValueError as exc:  # (UnicodeDecodeError and JSONDecodeError are ValueErrors)
        return json_answer(400, {"error": f"propose: {exc}", "path": path})
    try:
        done = await service.propose(command, timeout=timeout)
    except ProposalError as exc:
        return json_answer(_STATUS[exc.reason], {
            "error": str(exc), "reason": exc.reason.name.lower(),
            "leader": format_node_id(exc.leader) if exc.leader else None, "path": path})
    return json_answer(200, {"index": done.index, "term": done.term})




def coordination_routes(node: Any) -> list[Route]:
    """The routes above, for a node with a ``consensus`` service (None until it runs)."""

    async def status(request: Request) -> Response:
        service = getattr(node, "consensus", None)
        if service is None:
            return error_response(503, "coordination is not running", request.url.path)
        return JSONResponse(service.status())

    async def committed(request: Request) -> Response:
        service = getattr(node, "consensus", None)
        if service is None:
            return error_response(503, "coordination is not running", request.url.path)
        start, limit = request.query_params.get("start", "1"), \
            request.query_params.get("limit", "1000")
        if not start.isdigit() or not limit.isdigit() or int(limit) > _MAX_LIMIT:
            return error_response(400, f"start and limit: whole numbers, limit at most "
                                  f"{_MAX_LIMIT}", request.url.path)
        return JSONResponse({"entries": service.committed_entries(int(start), int(limit))})

    async def bench(request: Request) -> Response:
        path = request.url.path
        service = getattr(node, "consensus", None)
        if service is None:
            return error_response(503, "coordination is not running", path)
        try:
            body = json.loads(await request.body() or b"{}")
            proposers, seconds, size = (int(body.get("proposers", 32)),
                                        float(body.get("seconds", 5)), int(body.get("size", 64)))
            if not (1 <= proposers <= _MAX_PROPOSERS and 0 < seconds <= 60
                    and 1 <= size <= 65536):
                raise ValueError(f"proposers 1 to {_MAX_PROPOSERS}, seconds up to 60, size 1 "
                                 "to 65536")
        except (ValueError, TypeError, AttributeError) as exc:
            return error_response(400, f"bench: {exc}", path)
        return JSONResponse(await _bench(service, proposers, seconds, size))

    return [
        Route("/api/v1/coordination", status),
        Route("/api/v1/coordination/bench", bench, methods=["POST"]),
        Route(PROPOSE_PATH, _Propose(node), methods=["POST"]),
        Route("/api/v1/coordination/log", committed),
    ]
