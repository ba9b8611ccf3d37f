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
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..consensus.proposals import Failure, ProposalError
from ..ids import format_node_id
from ._ops import error_response

__all__ = ["coordination_routes"]

_STATUS = {Failure.NO_QUORUM: 503, Failure.NOT_LEADER: 503, Failure.TIMEOUT: 504,
           Failure.LOST: 409, Failure.REFUSED: 413}
_MAX_LIMIT = 10000


def coordination_routes(node: Any) -> list[Route]:
    """The routes above, for a node with a ``consensus`` service (None until it runs)."""

    async def status(request: Request) -> Response:
        service = getattr(node, "consensus", None)
        if service is None:
            return error_response(503, "coordination is not running", request.url.path)
        return JSONResponse(service.status())

    async def propose(request: Request) -> Response:
        path = request.url.path
        service = getattr(node, "consensus", None)
        if service is None:
            return error_response(503, "coordination is not running", path)
        try:
            body = json.loads(await request.body() or b"{}")
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
        except ValueError as exc:
            return error_response(400, f"propose: {exc}", path)
        try:
            done = await service.propose(command, timeout=timeout)
        except ProposalError as exc:
            return JSONResponse(
                {"error": str(exc), "reason": exc.reason.name.lower(),
                 "leader": format_node_id(exc.leader) if exc.leader else None, "path": path},
                status_code=_STATUS[exc.reason])
        return JSONResponse({"index": done.index, "term": done.term})

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

    return [
        Route("/api/v1/coordination", status),
        Route("/api/v1/coordination/propose", propose, methods=["POST"]),
        Route("/api/v1/coordination/log", committed),
    ]
