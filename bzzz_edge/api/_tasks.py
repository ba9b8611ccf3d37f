"""Tasks over HTTP: announce, list, show, claim, progress, complete, fail, release.
Uses trio (a command waits for its commit and for this node to apply it).

Endpoints:
    GET  /api/v1/tasks                  ``?state=S``: ``{"tasks": [task...], "applied",
                                        "tasks_held", "counters"}``, highest priority first
    POST /api/v1/tasks                  announce: ``{"title", "description", "role",
                                        "capabilities", "priority", "scopes", "deadline",
                                        "address"}`` (title required): 201 with the outcome
    GET  /api/v1/tasks/{id}             the task (``id``, ``state``, ``owner``: the node ID as
                                        `bzzz-edge id` prints it, or null, ``address``, ...)
    POST /api/v1/tasks/{id}/claim       claim it for this node
    POST /api/v1/tasks/{id}/progress    ``{"text"}``
    POST /api/v1/tasks/{id}/complete    ``{"result_b64"}`` optional: stored as UCXL content
    POST /api/v1/tasks/{id}/fail        ``{"reason"}``
    POST /api/v1/tasks/{id}/release     give it up (this node must hold it)

A command's outcome: 200 (201 for announce) ``{"id", "op", "index", "state", "owner",
"task"}``; refused by the state machine ``{"error", "reason", "winner", "index", "path"}``
with 409 when another node holds the task (``reason`` "owned", ``winner`` its owner: a lost
claim), 404 for an unknown task and 422 for the other reasons; not decided ``{"error",
"reason", "leader"}`` with 503, 504, 409 or 413 as ``/api/v1/coordination/propose``; 400 for
a malformed request; 503 when a result cannot be stored.

The server answers a command whose body has a length without the ASGI machinery
(``command_target``, ``_server.FastPost``), with the same bytes as the route: both build them
with ``command_answer``.

A command the coordinator held when it died (or lost its majority) is not answered "not
decided": the node proposes it again on the next coordinator and answers with what it did
(a claim: won, or lost with the winner; ``tasks._proposer``). "Not decided" comes only when
no coordinator took it within ``coordination.proposal_timeout`` plus the retry window (two
election timeouts and a second): 503 ``no_quorum`` (or 504 ``timeout``: it may still
commit); 413 when it is too large.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..consensus.proposals import Failure, ProposalError
from ..errors import BzzzError
from ..ids import format_node_id
from ..tasks import LIMITS, Outcome, Reason, State
from ..tasks.service import TaskError, task_view
from ..ucxl import UCXLError, parse
from ._ops import Answer, answer_response, error_response, json_answer

__all__ = ["command_answer", "command_target", "show_answer", "task_routes"]

_FAILURE_STATUS = {Failure.NO_QUORUM: 503, Failure.NOT_LEADER: 503, Failure.TIMEOUT: 504,
                   Failure.LOST: 409, Failure.REFUSED: 413}


def _outcome(out: Outcome, path: str, *, created: bool = False) -> Answer:
    winner = format_node_id(out.winner) if out.winner else None
    if not out.ok:
        assert out.reason is not None
        status = {Reason.OWNED: 409, Reason.UNKNOWN_TASK: 404}.get(out.reason, 422)
        return json_answer(status, {"error": f"{out.op or 'command'} refused: {out.text}",
                                    "reason": out.reason.value, "winner": winner,
                                    "index": out.index, "path": path})
    assert out.task is not None
    return json_answer(201 if created else 200, {
        "id": out.task_id, "op": out.op, "index": out.index, "state": out.task.state.value,
        "owner": winner, "task": task_view(out.task)})


def _strings(body: dict[str, Any], key: str) -> tuple[str, ...]:
    value = body.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key}: expected a list of strings")
    return tuple(value)


def _text(body: dict[str, Any], key: str, *, required: bool = False) -> str:
    value = body.get(key, "")
    if not isinstance(value, str) or (required and not value):
        raise ValueError(f"{key}: expected {'a non-empty' if required else 'a'} string")
    return value


def _announce_fields(body: dict[str, Any]) -> dict[str, Any]:
    """Raises: ValueError: a field of the wrong type, or a malformed address."""
    priority, deadline, address = body.get("priority", 0), body.get("deadline"), \
        body.get("address")
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ValueError("priority: expected an integer")
    if deadline is not None and (isinstance(deadline, bool) or
                                 not isinstance(deadline, int | float) or deadline <= 0):
        raise ValueError("deadline: expected a positive number of seconds")
    if address is not None:
        if not isinstance(address, str):
            raise ValueError("address: expected a UCXL address")
        if len(address) <= LIMITS.address:  # over-long ones go on, to be refused and counted
            try:
                address = str(parse(address))
            except UCXLError as exc:
                raise ValueError(f"address: {exc}") from None
    return {"title": _text(body, "title", required=True),
            "description": _text(body, "description"), "role": _text(body, "role"),
            "capabilities": _strings(body, "capabilities"), "priority": priority,
            "scopes": _strings(body, "scopes"),
            "deadline": None if deadline is None else float(deadline), "address": address}


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise ValueError("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body


async def command_answer(node: Any, op: str, task_id: str, raw: bytes, path: str) -> Answer:
    """The answer to a task command (``op`` "announce" for ``POST /api/v1/tasks``) with body
    ``raw``: both the route and the server's fast path (``_server.FastPost``) answer with it."""
    service = getattr(node, "tasks", None)
    if service is None:
        return json_answer(503, {"error": "tasks are not running", "path": path})
    try:
        body = _json_object(raw)
        if op == "announce":
            call = service.announce(**_announce_fields(body))
        elif op == "claim":
            call = service.claim(task_id)
        elif op == "progress":
            call = service.progress(task_id, _text(body, "text"))
        elif op == "fail":
            call = service.fail(task_id, _text(body, "reason"))
        elif op == "release":
            call = service.release(task_id)
        elif op == "complete":
            encoded = body.get("result_b64")
            if encoded is not None and not isinstance(encoded, str):
                raise ValueError("result_b64: expected base64 text")
            result = None if encoded is None else base64.b64decode(encoded, validate=True)
            call = service.complete(task_id, result)
        else:
            return json_answer(404, {"error": f"no such task operation {op!r}", "path": path})
    except (ValueError, binascii.Error) as exc:
        return json_answer(400, {"error": f"{op}: {exc}", "path": path})
    try:
        out = await call
    except TaskError as exc:
        return json_answer(404 if exc.missing else 409, {"error": str(exc), "path": path})
    except ProposalError as exc:
        return json_answer(_FAILURE_STATUS[exc.reason], {
            "error": str(exc), "reason": exc.reason.name.lower(),
            "leader": format_node_id(exc.leader) if exc.leader else None, "path": path})
    except BzzzError as exc:  # the result could not be stored (store full, closed...)
        return json_answer(503, {"error": f"{op}: {exc}", "path": path})
    return _outcome(out, path, created=op == "announce")


#: The targets of task commands the server may answer without ASGI (``command_target``):
#: no percent-encoding, query or trailing slash, so the path is the target as sent.
_COMMAND_TARGET = re.compile(r"/api/v1/tasks(?:/([^/%?#]+)/([^/%?#]+))?")


def command_target(target: bytes) -> tuple[str, str, str] | None:
    """``(op, task ID, path)`` of a task command's request target, or None for a target the
    app's router must read (see ``_COMMAND_TARGET``)."""
    if not target.isascii():
        return None
    path = target.decode("ascii")
    matched = _COMMAND_TARGET.fullmatch(path)
    if matched is None:
        return None
    task_id, op = matched.groups()
    return (op, task_id, path) if op is not None else ("announce", "", path)


_SHOW_TARGET = re.compile(r"/api/v1/tasks/([^/%?#]+)")


def show_answer(node: Any, target: bytes) -> tuple[list[tuple[bytes, bytes]], bytes] | None:
    """The headers and body of ``GET /api/v1/tasks/{id}`` (status 200) when ``target`` is a
    plain one (as ``_COMMAND_TARGET``) and the node holds the task, the same bytes as the
    route's; None for the route to answer (an error, another target). The server answers it
    without ASGI (``_server.FastGet``): the benchmark reads every node's task each round, and
    scripts poll it."""
    if not target.startswith(b"/api/v1/tasks/") or not target.isascii():
        return None
    matched = _SHOW_TARGET.fullmatch(target.decode("ascii"))
    service = getattr(node, "tasks", None)
    task = None if matched is None or service is None else service.get(matched.group(1))
    if task is None:
        return None
    _, headers, body = json_answer(200, task_view(task))
    return headers, body


def task_routes(node: Any) -> list[Route]:
    """The routes above, for a node with a ``tasks`` service (None until it runs)."""

    def service_of(request: Request) -> Any:
        return getattr(node, "tasks", None)

    async def listing(request: Request) -> Response:
        service = service_of(request)
        if service is None:
            return error_response(503, "tasks are not running", request.url.path)
        wanted = request.query_params.get("state")
        try:
            state = State(wanted) if wanted else None
        except ValueError:
            return error_response(400, f"state: one of {', '.join(s.value for s in State)}",
                                  request.url.path)
        status = service.status()
        return JSONResponse({"tasks": [task_view(t) for t in service.list(state)],
                             "applied": status["applied"], "tasks_held": status["tasks"],
                             "counters": status["counters"]})

    async def show(request: Request) -> Response:
        service = service_of(request)
        if service is None:
            return error_response(503, "tasks are not running", request.url.path)
        task = service.get(request.path_params["task_id"])
        if task is None:
            return error_response(404, f"no task {request.path_params['task_id']}",
                                  request.url.path)
        return JSONResponse(task_view(task))

    async def command(request: Request) -> Response:
        raw = await request.body() if service_of(request) is not None else b""
        return answer_response(await command_answer(
            node, request.path_params.get("op", "announce"),
            request.path_params.get("task_id", ""), raw, request.url.path))

    return [
        Route("/api/v1/tasks", listing),
        Route("/api/v1/tasks", command, methods=["POST"]),
        Route("/api/v1/tasks/{task_id}", show),
        Route("/api/v1/tasks/{task_id}/{op}", command, methods=["POST"]),
    ]
