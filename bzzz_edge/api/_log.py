"""The signed log over HTTP: what `bzzz-edge log show` and `log verify` ask a running node.
Uses trio (verification runs in a worker thread, off the event loop).

Endpoints:
    GET /api/v1/log          ?node=ID (default: this node) &limit=N (default 20): the last N
                             entries, the head, and whether the log is corrupt (fork evidence)
    GET /api/v1/log/verify   ?node=ID: check the chain, every signature and the signed root
                             (200 with ``ok`` true or false, naming the first bad entry)
    GET /api/v1/log/proof    ?node=ID&index=I: entry I, its Merkle inclusion proof and the
                             signed head, to check that one entry without the others
    GET /api/v1/logs         every log held here (this node's and replicated ones)
"""

from __future__ import annotations

from typing import Any

import trio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import BzzzError
from ..identity import parse_node_id
from ..signedlog import report
from ..signedlog.storage import NoSuchLog, default_workers
from ._ops import error_response

__all__ = ["log_routes"]

_DEFAULT_LIMIT = 20


def log_routes(node: Any) -> list[Route]:
    """The routes above, for a node with a ``signed_log`` (a ``LogService``, None until it
    runs)."""

    def service_and_author(request: Request) -> tuple[Any, bytes]:
        service = getattr(node, "signed_log", None)
        if service is None:
            raise LookupError("the signed log is not running")
        text = request.query_params.get("node")
        return service, service.author if not text else parse_node_id(text)

    async def show(request: Request) -> Response:
        path = request.url.path
        try:
            service, author = service_and_author(request)
            text = request.query_params.get("limit", str(_DEFAULT_LIMIT))
            if not text.isdigit():
                raise BzzzError(f"limit {text!r}: expected a whole number")
            with service.reader() as reader:
                return JSONResponse(report.show(reader, author, int(text)))
        except LookupError as exc:
            return error_response(503, f"log: {exc}", path)
        except NoSuchLog as exc:
            return error_response(404, f"log: {exc}", path)
        except BzzzError as exc:
            return error_response(400, f"log: {exc}", path)

    async def verify(request: Request) -> Response:
        path = request.url.path
        try:
            service, author = service_and_author(request)
        except LookupError as exc:
            return error_response(503, f"log verify: {exc}", path)
        except BzzzError as exc:
            return error_response(400, f"log verify: {exc}", path)

        def run() -> dict[str, Any]:
            with service.reader() as reader:
                return report.verify(reader, author, workers=default_workers())

        try:
            return JSONResponse(await trio.to_thread.run_sync(run))
        except NoSuchLog as exc:
            return error_response(404, f"log verify: {exc}", path)

    async def proof(request: Request) -> Response:
        path = request.url.path
        try:
            service, author = service_and_author(request)
            text = request.query_params.get("index", "")
            if not text.isdigit():
                raise BzzzError(f"index {text!r}: expected a whole number")
            with service.reader() as reader:
                return JSONResponse(report.proof(reader, author, int(text)))
        except LookupError as exc:
            return error_response(503, f"log proof: {exc}", path)
        except NoSuchLog as exc:
            return error_response(404, f"log proof: {exc}", path)
        except BzzzError as exc:
            return error_response(400, f"log proof: {exc}", path)

    async def held(request: Request) -> Response:
        service = getattr(node, "signed_log", None)
        if service is None:
            return error_response(503, "logs: the signed log is not running", request.url.path)
        with service.reader() as reader:
            return JSONResponse({"logs": report.logs_held(reader)})

    return [
        Route("/api/v1/log", show),
        Route("/api/v1/log/verify", verify),
        Route("/api/v1/log/proof", proof),
        Route("/api/v1/logs", held),
    ]
