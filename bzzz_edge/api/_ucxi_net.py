"""UCXI through the DHT: reads of addresses not held here, network listings and history, and
writes that wait for their publication. Does I/O (through the server and the DHT).

``wanted``/``fallback`` decide whether a GET goes to the network: ``?network=1`` always,
``?local=1`` never, otherwise only when this node never stored the address (0 versions).
Content read from the network carries ``X-UCXL-Source: dht``; its ``X-UCXL-Address`` has the
version's place in the network's order (``*^`` when it came from a latest-value record).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..store._records import Version
from ..ucxl import Address

__all__ = ["after_write", "fallback", "read", "wanted"]

_TRUE = {"1", "true", "yes"}


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "") in _TRUE


def wanted(request: Request, network: Any) -> bool:
    """Whether this GET asks the network first (``?network=1``)."""
    return network is not None and _flag(request, "network") and not _flag(request, "local")


def fallback(request: Request, network: Any, versions: int) -> bool:
    """Whether a GET this node cannot answer (``versions`` held here) goes to the network."""
    return network is not None and versions == 0 and not _flag(request, "local")


async def read(request: Request, network: Any, address: Address, *, head: bool) -> ASGIApp:
    query = request.query_params
    if address.has_wildcards or _flag(request, "list"):
        limit = query.get("limit", "100")
        listing = await network.list_network(
            address, limit=int(limit) if limit.isdigit() and 0 < int(limit) <= 1000 else 100,
            deleted=_flag(request, "deleted"))
        return JSONResponse({**listing, "next": None})
    if _flag(request, "history"):
        versions = await network.history(address)
        return JSONResponse({"address": address.canonical, "source": "dht",
                             "versions": [v.as_dict() for v in versions]})
    found, data = await network.read(address)
    if _flag(request, "meta"):
        return JSONResponse(found.as_dict())
    return _NetworkContent(found, b"" if head else data, len(data))


class _NetworkContent:
    """Content read from the network, with the headers a local read has (codec ``raw``)."""

    def __init__(self, found: Any, body: bytes, length: int) -> None:
        from ._ucxi import _Content

        version = Version(address=found.address, version=found.version, author=found.author,
                          timestamp=found.timestamp, hash=found.hash, size=found.size,
                          media_type=found.media_type, codec="raw", stored=0)
        self._inner = _Content(version, body, length)
        self._inner.headers.append((b"x-ucxl-source", b"dht"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._inner(scope, receive, send)


async def after_write(request: Request, network: Any, response: Response) -> Response:
    """With ``?publish=wait``: wait for the version's DHT publication; ``published`` says
    whether it was done within ``dht.fetch_timeout``."""
    if network is None or request.query_params.get("publish", "") != "wait":
        return response
    body = json.loads(bytes(response.body))
    body["published"] = await network.wait_published(body["address"], network.fetch_timeout)
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    return JSONResponse(body, status_code=response.status_code, headers=headers)
