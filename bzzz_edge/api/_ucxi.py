"""UCXI: the HTTP API on UCXL addresses, under ``/ucxi/v1/``. Does I/O (through the server).

The address is the rest of the path, percent-encoded (``/ucxi/v1/ucxl%3A%2F%2Fa%3Ar%40p%3At%2F
%2A%5E%2Fdoc``), or ``?address=`` on ``/ucxi/v1/``. Operations:

    GET     resolve (temporal navigation); content with its media type, version metadata in
            ``X-UCXL-*`` headers; ``?meta=1``: the metadata as JSON; ``?history=1``: every
            version; a wildcard address (or ``?list=1``: a path ending in ``/`` is a prefix)
            lists the latest version of each match, ``{"items": [...], "next": token}``
            (``?limit=``, ``?after=`` the previous page's ``next``, ``?deleted=1``)
    HEAD    as GET, without the body
    PUT     a new version of a concrete ``*^`` address (the body; ``Content-Type`` kept)
    POST    create or append: a new version whose content is the latest content followed by
            the body (the first version when there is none)
    DELETE  a tombstone as the new latest version (history kept)
    ANNOUNCE, or ``POST /ucxi/v1/announce?address=``: record that this node holds the address

Through the DHT (``_ucxi_net``): a GET of an address this node never stored is answered from
the network (``X-UCXL-Source: dht``); ``?local=1`` skips that, ``?network=1`` asks the
network even when the address is held here (a wildcard: ``ls --network``). A write with
``?publish=wait`` answers once the DHT publication of the version is done.

Errors are ``{"error": {"code", "message", ...}}``: ``bad_address`` 400 (with ``position``),
``bad_request`` 400, ``not_found`` 404 (nothing stored, ``versions`` 0; or a tombstone,
``deleted``), ``no_such_version`` 404 (``versions``, ``selected``), ``method_not_allowed``
405, ``not_writable`` 409 (a wildcard or temporal address; ``position``), ``conflict`` 409,
``too_large`` 413 (from ``Content-Length`` before the body is read, or while reading it),
``unavailable`` 503, ``storage_full`` 507.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import BzzzError, CodecError, StorageError
from ..store._optimize import optimize
from ..store._records import Conflict, ContentTooLarge, NotFound, Version
from ..store.content import ContentStore
from ..ucxl import Address, NoSuchVersion, UCXLError, parse
from . import _ucxi_net

__all__ = ["PREFIX", "UcxiApp", "store_routes"]

PREFIX = "/ucxi/v1"
_WRITES = {"PUT", "POST", "DELETE", "ANNOUNCE"}
_ALLOW = "GET, HEAD, PUT, POST, DELETE, ANNOUNCE"
_MEDIA_TYPE = re.compile(r"[!-~][ -~]{0,254}")
_TRUE = {"1", "true", "yes"}
_NO_QUERY: dict[str, str] = {}
_FAST_PREFIX = (PREFIX + "/").encode()
_FAST_LEN = len(_FAST_PREFIX)


class _Refused(Exception):
    """An answer other than success, with its status and error body."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.extra = status, code, extra


def _error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    headers = {"Allow": _ALLOW} if status == 405 else None
    if status == 413:  # the body stays unread: this connection cannot carry another request
        headers = {"Connection": "close"}
    return JSONResponse({"error": {"code": code, "message": message, **extra}},
                        status_code=status, headers=headers)


class UcxiApp:
    """The ASGI app mounted at ``/ucxi/v1``; ``content()`` is the node's store (or None)."""

    def __init__(self, content: Any, max_body: Any, network: Any = None) -> None:
        self._content = content
        self._max_body = max_body
        self._network = network or (lambda: None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        try:
            response = await self._handle(request)
        except _Refused as exc:
            response = _error(exc.status, exc.code, str(exc), **exc.extra)
        await response(scope, receive, send)

    def fast_get(self, target: bytes) -> tuple[list[tuple[bytes, bytes]], bytes] | None:
        """A GET of one address in the path with no query, answered outside ASGI (the server's
        hot path, ``_server._OneWriteResponses``): ``(headers, body)`` exactly as ``__call__``
        would send them with status 200, or None for ``__call__`` to answer (any error, a
        wildcard, a query, an address this node does not hold: the network may have it)."""
        if not target.startswith(_FAST_PREFIX) or b"?" in target or len(target) <= _FAST_LEN:
            return None
        content: ContentStore | None = self._content()
        if content is None or content.closed:
            return None
        try:
            text = target[_FAST_LEN:].decode("ascii")
            if "%" in text:
                text = unquote(text, errors="strict")
            version, body = content.get(parse(text))
            answer = _Content(version, body, len(body))
        except Exception:  # whatever it is, __call__ meets it again and answers it
            return None
        return answer.headers, answer.body

    async def _handle(self, request: Request) -> ASGIApp:
        method = request.method.upper()
        if method not in _ALLOW.split(", "):
            raise _Refused(405, "method_not_allowed",
                           f"method {method[:32]!r} is not allowed here; use {_ALLOW}")
        rest = _raw_rest(request)
        if rest == "/announce" and method == "POST":
            method, rest = "ANNOUNCE", ""
        address = _address(request, rest)
        content: ContentStore | None = self._content()
        if content is None or content.closed:
            raise _Refused(503, "unavailable", "the store is not open (node starting or stopping)")
        try:
            if method in _WRITES:
                response = await self._write(request, content, method, address)
                return await _ucxi_net.after_write(request, self._network(), response)
            network = self._network()
            if _ucxi_net.wanted(request, network):
                return await _ucxi_net.read(request, network, address, head=method == "HEAD")
            try:
                return self._read(request, content, address, head=method == "HEAD")
            except (NoSuchVersion, NotFound) as exc:  # NotFound: ?history=1 of nothing
                if getattr(exc, "deleted", False) or not _ucxi_net.fallback(
                        request, network, exc.versions):
                    raise
                return await _ucxi_net.read(request, network, address, head=method == "HEAD")
        except UCXLError as exc:
            raise _Refused(400, "bad_address", str(exc), position=exc.position) from None
        except NoSuchVersion as exc:
            code = "not_found" if exc.versions == 0 else "no_such_version"
            raise _Refused(404, code, str(exc), versions=exc.versions,
                           selected=exc.selected) from None
        except NotFound as exc:
            raise _Refused(404, "not_found", str(exc), versions=exc.versions,
                           deleted=exc.deleted) from None
        except ContentTooLarge as exc:
            raise _Refused(413, "too_large", str(exc), limit=exc.limit) from None
        except Conflict as exc:
            raise _Refused(409, "conflict", str(exc)) from None
        except (StorageError, CodecError) as exc:
            if content.full:
                raise _Refused(507, "storage_full", str(exc)) from None
            raise _Refused(503, "unavailable", str(exc)) from None
        except BzzzError as exc:  # the network did not deliver (after the cases above)
            raise _Refused(504, "network_unavailable", str(exc)) from None

    def _read(self, request: Request, content: ContentStore, address: Address, *,
              head: bool) -> ASGIApp:
        query: Any = request.query_params if request.scope.get("query_string") else _NO_QUERY
        if address.has_wildcards or query.get("list", "") in _TRUE:
            limit = _int(query.get("limit", "100"), "limit", 1, 1000)
            after = _token(query.get("after", ""))
            items, token = content.list(address, limit=limit, after=after,
                                        deleted=query.get("deleted", "") in _TRUE)
            return JSONResponse({"items": [v.as_dict() for v in items],
                                 "next": token.hex() if token else None})
        if query.get("history", "") in _TRUE:
            start = _int(query.get("start", "1"), "start", 1, 2**32)
            versions = content.history(address, start=start,
                                       limit=_int(query.get("limit", "1000"), "limit", 1, 1000))
            if not versions and start == 1:
                raise NotFound(f"{address.canonical} has no content (0 versions exist)",
                               address=address.canonical, versions=0, deleted=False)
            return JSONResponse({"address": address.canonical,
                                 "versions": [v.as_dict() for v in versions]})
        if query.get("meta", "") in _TRUE:
            version = content.meta(address)
            return JSONResponse(version.as_dict(), headers=_headers(version))
        if head:
            version = content.meta(address)
            return _Content(version, b"", version.size)
        version, body = content.get(address)
        return _Content(version, body, len(body))

    async def _write(self, request: Request, content: ContentStore, method: str,
                     address: Address) -> Response:
        try:
            address.check_writable()
        except UCXLError as exc:
            raise _Refused(409, "not_writable", str(exc), position=exc.position) from None
        if method == "DELETE":
            return JSONResponse(_summary(await content.delete(address)))
        if method == "ANNOUNCE":
            version = await content.announce(address)
            return JSONResponse({**_summary(version), "announced": True})
        media_type = _media_type(request)
        body = await _read_body(request, self._max_body())
        if method == "PUT":
            version = await content.put(address, body,
                                        media_type=media_type or "application/octet-stream")
        else:
            version = await content.append(address, body, media_type=media_type)
        return JSONResponse(_summary(version), status_code=201, headers=_headers(version))


def store_routes(content: Any) -> list[Route]:
    """``POST /api/v1/store/optimize`` (what ``bzzz-edge store optimize`` asks) and
    ``GET /api/v1/store`` (statistics); ``content()`` is the node's store or None."""

    def current(request: Request) -> ContentStore:
        store: ContentStore | None = content()
        if store is None or store.closed:
            raise _Refused(503, "unavailable", "the store is not open")
        return store

    async def run_optimize(request: Request) -> Response:
        try:
            return JSONResponse((await optimize(current(request))).as_dict())
        except _Refused as exc:
            return _error(exc.status, exc.code, str(exc))
        except (StorageError, CodecError) as exc:
            return _error(503, "unavailable", f"optimize stopped: {exc}")

    async def stats(request: Request) -> Response:
        try:
            return JSONResponse(current(request).stats())
        except _Refused as exc:
            return _error(exc.status, exc.code, str(exc))

    return [Route("/api/v1/store/optimize", run_optimize, methods=["POST"]),
            Route("/api/v1/store", stats)]


class _Content:
    """Content with its version's headers, sent straight as ASGI messages (the hot path:
    Starlette's Response would re-encode every header)."""

    __slots__ = ("body", "headers")

    def __init__(self, version: Version, body: bytes, length: int) -> None:
        self.body = body
        self.headers = [(name, value.encode("latin-1"))
                        for name, value in zip(_RAW_NAMES, _headers(version).values(),
                                               strict=True)]
        self.headers += [(b"content-type", version.media_type.encode("latin-1")),
                         (b"content-length", str(length).encode())]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})


_RAW_NAMES = (b"x-ucxl-address", b"x-ucxl-version", b"x-ucxl-author", b"x-ucxl-timestamp",
              b"x-ucxl-hash", b"x-ucxl-size", b"x-ucxl-codec", b"etag", b"x-content-type-options",
              b"content-security-policy")  # the names of _headers, in its order


def _raw_rest(request: Request) -> str:
    """The path after ``/ucxi/v1`` exactly as sent (still percent-encoded)."""
    raw: bytes = request.scope.get("raw_path") or request.scope["path"].encode()
    path = raw.split(b"?", 1)[0]
    try:
        text: str = path.decode("ascii")
    except UnicodeDecodeError:
        raise _Refused(400, "bad_address", "the request path is not ASCII",
                       position=0) from None
    return text[len(PREFIX):] if text.startswith(PREFIX) else text


def _address(request: Request, rest: str) -> Address:
    if rest in ("", "/"):
        text = request.query_params.get("address")
        if text is None:
            raise _Refused(400, "bad_request", "no address: give it in the path, "
                           "percent-encoded (/ucxi/v1/ucxl%3A%2F%2F...), or as ?address=")
    else:
        try:
            text = unquote(rest[1:], errors="strict")
        except UnicodeDecodeError:
            raise _Refused(400, "bad_address", "the percent-encoded address is not UTF-8",
                           position=0) from None
    try:
        return parse(text)
    except UCXLError as exc:
        raise _Refused(400, "bad_address", str(exc), position=exc.position) from None


def _media_type(request: Request) -> str | None:
    value = request.headers.get("content-type")
    if value is None:
        return None
    if not _MEDIA_TYPE.fullmatch(value) or "/" not in value:
        raise _Refused(400, "bad_request", "Content-Type must be a media type such as "
                       "text/plain (printable ASCII, at most 255 characters)")
    return str(value)


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 from ``Content-Length`` before a byte of it is read."""
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit() or len(length) > 18:
            raise _Refused(400, "bad_request", "Content-Length is not a number")
        if int(length) > limit:
            raise _Refused(413, "too_large", f"a body of {int(length)} bytes exceeds the limit "
                           f"of {limit} bytes (storage.max_content_bytes)", limit=limit)
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise _Refused(413, "too_large", f"the body exceeds the limit of {limit} bytes "
                           "(storage.max_content_bytes)", limit=limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _int(text: str, name: str, low: int, high: int) -> int:
    if not text.isdigit() or not low <= int(text[:12]) <= high:
        raise _Refused(400, "bad_request", f"{name} must be a whole number from {low} to {high}")
    return int(text)


def _token(text: str) -> bytes:
    try:
        return bytes.fromhex(text) if len(text) <= 8192 else b"\xff"
    except ValueError:
        raise _Refused(400, "bad_request", "after must be the 'next' token of a listing") from None


def _summary(version: Version) -> dict[str, Any]:
    return version.as_dict()


def _headers(version: Version) -> dict[str, str]:
    return {
        "X-UCXL-Address": version.address,
        "X-UCXL-Version": str(version.version),
        "X-UCXL-Author": version.author,
        "X-UCXL-Timestamp": repr(version.timestamp),
        "X-UCXL-Hash": version.hash,
        "X-UCXL-Size": str(version.size),
        "X-UCXL-Codec": version.codec,
        "ETag": f'"{version.hash}"',
        # Content is whatever agents stored: never let a browser run it on the API's origin.
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",
    }
