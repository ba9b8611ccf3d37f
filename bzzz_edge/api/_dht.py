"""The DHT's debugging endpoints (what ``bzzz-edge dht`` asks). Does I/O (through the server).

    GET /api/v1/dht                      routing table, records, RPCs in flight, counters
    GET /api/v1/dht/routes               every contact with its bucket
    GET /api/v1/dht/find?address=A       a lookup of A's key (asked of the network even when
                                         this node holds it): closest nodes, hops, records
    GET /api/v1/dht/providers?address=A  the nodes that announced holding A
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import BzzzError
from ..identity import format_node_id
from ..ucxl import UCXLError, parse

__all__ = ["dht_routes"]


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _contact(node: bytes, host: str, port: int) -> dict[str, Any]:
    return {"node_id": format_node_id(node), "address": f"{host}:{port}"}


def dht_routes(network: Any) -> list[Route]:
    """``network()`` is the node's ``ContentNetwork`` (None while not running)."""

    def running() -> Any:
        current = network()
        if current is None or current.dht.core is None:
            raise BzzzError("the DHT is not running")
        return current

    async def status(request: Request) -> Response:
        try:
            return JSONResponse(running().dht.status())
        except BzzzError as exc:
            return _error(503, "unavailable", str(exc))

    async def routes(request: Request) -> Response:
        try:
            rows = running().dht.routes()
        except BzzzError as exc:
            return _error(503, "unavailable", str(exc))
        for row in rows:
            row["node_id"] = format_node_id(bytes.fromhex(row.pop("node")))
        return JSONResponse({"routes": rows})

    async def find(request: Request) -> Response:
        try:
            current = running()
            addr = parse(request.query_params.get("address", ""))
            done = await current.dht.get(addr.content_key, lookup=True)
        except UCXLError as exc:
            return _error(400, "bad_address", str(exc))
        except BzzzError as exc:
            return _error(503, "unavailable", str(exc))
        result = done.result
        return JSONResponse({
            "key": addr.content_key.hex(), "hops": result.hops, "queried": result.queried,
            "answered": result.answered, "failed": result.failed, "timed_out": result.timed_out,
            "closest": [_contact(c.node, c.host, c.port) for c in result.closest],
            "records": [{"publisher": format_node_id(r.publisher), "version": r.version,
                         "timestamp_ms": r.timestamp_ms, "address": r.address,
                         "value_bytes": len(r.value),
                         "content_hash": r.content_hash.hex() if r.content_hash else None}
                        for r in done.records]})

    async def providers(request: Request) -> Response:
        try:
            current = running()
            addr = parse(request.query_params.get("address", ""))
            found = await current.providers(addr.content_key)
        except UCXLError as exc:
            return _error(400, "bad_address", str(exc))
        except BzzzError as exc:
            return _error(503, "unavailable", str(exc))
        return JSONResponse({"key": addr.content_key.hex(),
                             "providers": [format_node_id(p) for p in found]})

    return [Route("/api/v1/dht", status), Route("/api/v1/dht/routes", routes),
            Route("/api/v1/dht/find", find), Route("/api/v1/dht/providers", providers)]
