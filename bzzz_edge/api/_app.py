"""The ASGI application (Starlette): routes, token check, JSON errors.
Does I/O through the server that runs it.

Endpoints:
    GET /                 a small status page for people
    GET /health           overall status (200 healthy, 503 otherwise)
    GET /health/live      the process answers (200 until shutdown begins)
    GET /health/ready     ready for work (200) or not (503)
    GET /health/checks    every check: status, critical, last run, duration, message
    GET /metrics          Prometheus text format
    GET /api/v1/node      node ID, name, version, hot-path implementations, uptime
    GET /api/v1/peers     every known peer: ID, name, status, incarnation, address, connected
    and the operator endpoints of ``_ops`` (join, leave, force-leave, reload, monitor),
    the pub/sub endpoints of ``_topics`` (publish, event stream, topic counters),
    and UCXI under /ucxi/v1 (``_ucxi``: UCXL content; errors ``{"error": {"code", ...}}``).
    The signed log's endpoints are in ``_log`` (log, log/verify, log/proof, logs); the
    coordinator's and the decision log's in ``_coordination``; tasks under /api/v1/tasks in
    ``_tasks``; the directory of agents under /api/v1/agents in ``_agents``.

Every error, 401 included, is ``{"error": ..., "path": ...}``.
"""

from __future__ import annotations

import hmac
import html
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..lifecycle.health import HealthRegistry
from ..lifecycle.metrics import CONTENT_TYPE, Metrics
from ..settings import Settings
from ._agents import agent_routes
from ._coordination import PROPOSE_PATH, coordination_routes, propose_answer
from ._dht import dht_routes
from ._log import log_routes
from ._ops import Answer, MonitorStreams, error_response, operator_routes
from ._tasks import command_answer, command_target, show_answer, task_routes
from ._topics import TopicStreams, topic_routes
from ._ucxi import PREFIX as UCXI_PREFIX
from ._ucxi import UcxiApp, store_routes

__all__ = ["ApiNode", "create_app"]


class ApiNode(Protocol):
    """What the API needs from a node."""

    health: HealthRegistry
    metrics: Metrics
    settings: Settings

    @property
    def ready(self) -> bool: ...

    @property
    def shutting_down(self) -> bool: ...

    def info(self) -> dict[str, Any]: ...

    def peer_list(self) -> list[dict[str, Any]]: ...

    async def join(self, address: tuple[str, int]) -> str | None: ...

    def leave(self) -> None: ...

    def force_leave(self, node_id: bytes) -> dict[str, Any]: ...

    def reload_config(self) -> dict[str, Any]: ...


class _TokenAuth:
    """Require ``Authorization: Bearer <token>`` on every request when a token is set."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self.expected = app, f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                response = error_response(
                    401, "unauthorized: missing or wrong bearer token", scope["path"],
                    **{"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _Api(Starlette):
    """Starlette, with UCXI reads (GET and HEAD under /ucxi/v1) handed straight to the UCXI app
    behind the same token check: past Starlette's error and exception middlewares and its
    router, a tenth of what the node spends on a small GET (benchmarks/bench_store.py). UCXI
    answers its own errors, so nothing those layers do applies to it."""

    ucxi_reads: ASGIApp | None = None

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        return stack if self.ucxi_reads is None else _UcxiReads(stack, self.ucxi_reads)


class _UcxiReads:
    def __init__(self, app: ASGIApp, reads: ASGIApp) -> None:
        self.app, self.reads = app, reads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and scope["method"] in ("GET", "HEAD")
                and scope["path"].startswith(UCXI_PREFIX + "/")):
            await self.reads(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def _fast_get(ucxi: UcxiApp, node: ApiNode, token: str) -> Any:
    """``ApiServer``'s answer to a plain GET without ASGI (``_server.FastGet``): UCXI reads
    of one address and a task (``show_answer``), behind the same token check as every
    request; anything else, a wrong token included, is left to the app (which refuses it as
    it always did)."""
    expected = f"Bearer {token}".encode()

    def fast_get(target: bytes, authorization: bytes) -> Any:
        if token and not hmac.compare_digest(authorization, expected):
            return None
        return ucxi.fast_get(target) or show_answer(node, target)

    return fast_get


def _fast_post(node: ApiNode, token: str) -> Any:
    """``ApiServer``'s answer to a POST without ASGI (``_server.FastPost``): proposals to the
    decision log and task commands (announce, claim...: ``command_target``), behind the same
    token check; anything else, a wrong token or a query string included, is left to the app.
    The hottest requests of a coordination round."""
    expected = f"Bearer {token}".encode() if token else b""
    propose_target = PROPOSE_PATH.encode()

    async def propose(body: bytes) -> Answer:
        return await propose_answer(node, body)

    def fast_post(target: bytes, authorization: bytes) -> Any:
        if token and not hmac.compare_digest(authorization, expected):
            return None
        if target == propose_target:
            return propose
        command = command_target(target)
        if command is None:
            return None
        op, task_id, path = command
        return lambda body: command_answer(node, op, task_id, body, path)

    return fast_post


def _overall(node: ApiNode) -> tuple[str, int]:
    if node.shutting_down:
        return "stopping", 503
    if node.health.critical_failing:
        return "failing", 503
    if any(c.result.status == "failing" for c in node.health.checks.values()):
        return "degraded", 200
    return "ok", 200


def create_app(node: ApiNode, *, token: str = "") -> Starlette:
    """Build the ASGI app for ``node``; with ``token`` every request must carry it."""

    async def health(request: Request) -> Response:
        status, code = _overall(node)
        return JSONResponse({"status": status, "ready": node.ready}, status_code=code)

    async def live(request: Request) -> Response:
        alive = not node.shutting_down
        return JSONResponse({"status": "alive" if alive else "stopping"},
                            status_code=200 if alive else 503)

    async def ready(request: Request) -> Response:
        ok = node.ready and not node.shutting_down and not node.health.critical_failing
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    async def checks(request: Request) -> Response:
        status, code = _overall(node)
        return JSONResponse({"status": status, "checks": node.health.summary()}, status_code=code)

    async def metrics(request: Request) -> Response:
        return Response(node.metrics.exposition(), media_type=CONTENT_TYPE)

    async def node_info(request: Request) -> Response:
        return JSONResponse(node.info())

    async def peers(request: Request) -> Response:
        return JSONResponse({"peers": node.peer_list()})

    async def page(request: Request) -> Response:
        info, (status, _) = node.info(), _overall(node)
        rows = "".join(
            f"<tr><td>{html.escape(name)}</td><td>{html.escape(c['status'])}</td>"
            f"<td>{html.escape(c['message'])}</td></tr>"
            for name, c in node.health.summary().items()
        )
        body = (
            "<!doctype html><meta charset=utf-8><title>bzzz-edge</title>"
            "<style>body{font-family:sans-serif;margin:2em}td{padding:.2em 1em}</style>"
            f"<h1>bzzz-edge node {html.escape(info['name'])}</h1>"
            f"<p>ID <code>{html.escape(info['node_id'])}</code><br>status <b>{status}</b>, "
            f"up {info['uptime_s']:.0f}s, version {html.escape(info['version'])}</p>"
            f"<h2>Health checks</h2><table>{rows}</table>"
            "<p><a href=/health/checks>checks (JSON)</a> · <a href=/metrics>metrics</a></p>"
        )
        return HTMLResponse(body)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_response(exc.status_code, exc.detail, request.url.path,
                              **(exc.headers or {}))

    monitors = MonitorStreams()
    topic_streams = TopicStreams()

    ucxi = UcxiApp(lambda: getattr(node, "content", None),
                   lambda: node.settings.storage.max_content_bytes,
                   lambda: getattr(node, "dht_content", None))
    routes = [
        Route("/", page),
        Route("/health", health),
        Route("/health/live", live),
        Route("/health/ready", ready),
        Route("/health/checks", checks),
        Route("/metrics", metrics),
        Route("/api/v1/node", node_info),
        Route("/api/v1/peers", peers),
        *operator_routes(node, monitors),
        *topic_routes(node, topic_streams),
        *store_routes(lambda: getattr(node, "content", None)),
        *log_routes(node),
        *dht_routes(lambda: getattr(node, "dht_content", None)),
        *coordination_routes(node),
        *task_routes(node),
        *agent_routes(node),
        Mount(UCXI_PREFIX, app=ucxi),
    ]
    middleware = [Middleware(_TokenAuth, token=token)] if token else []
    app = _Api(routes=routes, middleware=middleware,
               exception_handlers={HTTPException: http_error})
    app.ucxi_reads = _TokenAuth(ucxi, token) if token else ucxi
    app.state.fast_get = _fast_get(ucxi, node, token)  # the server answers plain GETs with it
    app.state.fast_post = _fast_post(node, token)  # and proposals and task commands
    app.state.monitors = monitors  # the server ends these streams when it stops
    app.state.topic_streams = topic_streams  # and these
    return app
