"""Serving peers' content requests (``dht.history``, ``dht.chunk``, ``dht.list``) from this
node's content store. Does I/O (reads the store).

Requests are served inline in the connection's reader (they never wait on the network) and
checked field by field: a malformed one is an error answer. The content of the last few
hashes asked for is cached, so a large blob fetched in chunks is read from the store once.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from typing import Any

from ..errors import BzzzError
from ..net import ConnectionManager
from ..store.content import ContentStore
from ..ucxl import Address, parse
from ..ucxl.forms import base_of, with_version
from ._content_wire import CHUNK, MAX_HISTORY, MAX_LIST, packb, unpack_map

__all__ = ["ContentServer"]

_CACHED = 4


class ContentServer:
    """Registers the content RPC methods with ``manager`` and answers them from ``content``;
    ``counters``: the content network's (``chunks_served``)."""

    def __init__(self, content: ContentStore, manager: ConnectionManager,
                 counters: Counter[str]) -> None:
        self._content = content
        self.counters = counters
        self._cache: OrderedDict[bytes, bytes] = OrderedDict()
        manager.on_rpc("dht.history", self._serve_history, inline=True)
        manager.on_rpc("dht.chunk", self._serve_chunk, inline=True)
        manager.on_rpc("dht.list", self._serve_list, inline=True)

    def _address(self, request: dict[str, Any]) -> Address:
        text = request.get("a")
        if not isinstance(text, str) or len(text) > 4096:
            raise BzzzError("request field 'a' is not an address")
        addr = parse(text)
        if addr.has_wildcards:
            raise BzzzError("request field 'a' has a wildcard")
        return addr

    async def _serve_history(self, peer: bytes, body: bytes) -> bytes:
        addr = self._address(unpack_map(body))
        versions = self._content.history(base_of(addr), limit=MAX_HISTORY)
        return packb([[v.version, v.timestamp, v.hash, v.size, v.media_type, v.deleted]
                       for v in versions])

    async def _serve_chunk(self, peer: bytes, body: bytes) -> bytes:
        request = unpack_map(body)
        addr, digest, offset = self._address(request), request.get("h"), request.get("o")
        if not isinstance(digest, bytes) or len(digest) != 32:
            raise BzzzError("request field 'h' is not a SHA-256")
        if not isinstance(offset, int) or offset < 0:
            raise BzzzError("request field 'o' is not an offset")
        data = self._cache.get(digest)
        if data is None:
            base = base_of(addr)
            match = next((v for v in self._content.history(base, limit=MAX_HISTORY)
                          if v.hash == digest.hex() and not v.deleted), None)
            if match is None:
                raise BzzzError("no such content here")
            _, data = self._content.get(with_version(base, match.version))
            self._cache[digest] = data
            while len(self._cache) > _CACHED:
                self._cache.popitem(last=False)
        self._cache.move_to_end(digest)
        self.counters["chunks_served"] += 1
        return packb({"s": len(data), "d": data[offset:offset + CHUNK]})

    async def _serve_list(self, peer: bytes, body: bytes) -> bytes:
        request = unpack_map(body)
        text, limit = request.get("p"), request.get("l")
        if not isinstance(text, str) or len(text) > 4096:
            raise BzzzError("request field 'p' is not a pattern")
        if not isinstance(limit, int) or not 1 <= limit <= MAX_LIST:
            raise BzzzError(f"request field 'l' is not a limit from 1 to {MAX_LIST}")
        items, _ = self._content.list(parse(text), limit=limit,
                                      deleted=request.get("d") is True)
        return packb([v.as_dict() for v in items])
