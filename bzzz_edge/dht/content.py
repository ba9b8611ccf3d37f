"""UCXL content through the DHT: publish what this node writes, read what it does not hold.
Uses trio.

Publishing (``follow_store``): every version the content store writes becomes, under the
address's content key,

- a VALUE record: the content itself when it fits ``max_value_bytes`` (the value is the msgpack
  of ``[media_type, content]``; ``[]`` for a tombstone), otherwise its SHA-256 to fetch from a
  provider;
- a PROVIDER record: this node holds versions of the address (ANNOUNCE publishes only this).

Changes are coalesced per address (a burst of writes to one address publishes the last) and
published one at a time; ``wait_published`` lets a caller wait for one.

Reading (``read``), when the local store has nothing under an address:

- the latest version (``*^``): the newest VALUE record found; a small value is in it (signed
  by its publisher, so it is what the publisher wrote), a large one is fetched by hash;
- any other temporal segment: versions are per node (each node numbers its own writes), and a
  record slot keeps only a publisher's latest. So the network's history of an address is
  built from its providers: each is asked for its own versions (``dht.history``), and the
  union, ordered by time (then author, then version), is what ``*N``, ``*~``, ``~~N`` and
  ``^^N`` navigate. A provider that is down takes its versions with it (its latest survives in
  its VALUE record, replicated at the k closest nodes).

Content is fetched by hash from the nodes said to hold it, in chunks of at most ``CHUNK`` bytes
(``dht.chunk``), and checked against the hash: a provider whose content does not match is
counted, logged, and the next one is tried. The whole read is bounded by ``fetch_timeout``.

``list_network`` asks every connected peer for its matches of a pattern (``dht.list``) and
merges them with ours, for at most ``list_timeout`` seconds: a wildcard has no key to look up.

The RPCs' messages and the merging of answers are in ``_content_wire``; serving peers'
requests from our store is ``_content_serving``'s.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter, OrderedDict
from collections.abc import Iterable
from typing import Any

import msgpack
import trio

from ..errors import BzzzError
from ..feed import Overflowed, Subscription
from ..identity import format_node_id
from ..ids import short_id
from ..net import ConnectionClosed, ConnectionManager, RequestFailed
from ..store._records import NotFound, StoreChange, Version
from ..store.content import ContentStore
from ..ucxl import Address, parse
from ..ucxl.forms import base_of
from ._content_serving import ContentServer
from ._content_wire import (
    CHUNK,
    MAX_HISTORY,
    MAX_LIST,
    NetworkVersion,
    keep_newest,
    merge_histories,
    packb,
    unpack_map,
)
from ._record import Kind, Record
from .service import DhtService

__all__ = ["CHUNK", "ContentNetwork", "NetworkVersion"]

log = logging.getLogger(__name__)

MAX_PROVIDERS = 16
MAX_LIST_PEERS = 64
_PENDING = 4096
_PUBLISHED = 1024


class ContentNetwork:
    """See the module docstring."""

    def __init__(self, dht: DhtService, content: ContentStore, manager: ConnectionManager, *,
                 fetch_timeout: float, list_timeout: float, max_content_bytes: int) -> None:
        self.dht = dht
        self._content = content
        self._manager = manager
        self.fetch_timeout = fetch_timeout
        self.list_timeout = list_timeout
        self._max_content = max_content_bytes
        self._pending: OrderedDict[bytes, StoreChange] = OrderedDict()
        self._wakeup = trio.Event()
        self._published: OrderedDict[str, trio.Event] = OrderedDict()
        self.counters: Counter[str] = Counter()
        self._server = ContentServer(content, manager, self.counters)

    # --- publishing ---------------------------------------------------------------------------

    async def run(self, changes: Subscription[StoreChange], *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._collect, changes)
            task_status.started()
            await self._publish_loop()

    async def _collect(self, changes: Subscription[StoreChange]) -> None:
        async for change in changes:
            if isinstance(change, Overflowed):
                self.counters["changes_missed"] += change.missed
                log.warning("DHT: %d store changes missed; their addresses are published at "
                            "the next write or republication", change.missed)
                continue
            key = parse(change.version.address).content_key
            superseded = self._pending.pop(key, None)
            if superseded is not None:  # its waiters are told when the newer one is out
                self._mark_published(superseded.version.address)
            self._pending[key] = change
            if len(self._pending) > _PENDING:
                self._pending.popitem(last=False)
                self.counters["publications_dropped"] += 1
            self._wakeup.set()

    async def _publish_loop(self) -> None:
        while True:
            if not self._pending:
                self._wakeup = trio.Event()
                await self._wakeup.wait()
            _, change = self._pending.popitem(last=False)
            try:
                stored = await self.publish(change)
            except BzzzError as exc:
                self.counters["publish_failed"] += 1
                log.warning("DHT: publishing %s failed: %s", change.version.address, exc)
                stored = 0
            self._mark_published(change.version.address)
            log.debug("DHT: published %s (%s) at %d nodes", change.version.address,
                      change.kind, stored, extra={"event": "dht_published",
                                                 "status": change.kind, "reason": str(stored)})

    async def publish(self, change: StoreChange) -> int:
        """Publish one store change; returns how many nodes took its value record."""
        version = change.version
        addr = parse(version.address)
        key, base = addr.content_key, base_of(addr)
        digest = bytes.fromhex(version.hash) if version.hash else None
        records: list[Record] = [self.dht.sign(Kind.PROVIDER, key, address=base,
                                               content_hash=digest)]
        if change.kind in ("put", "delete"):
            records.insert(0, self._value_record(version, key, base, digest))
        stored = 0
        async with trio.open_nursery() as nursery:
            async def put(record: Record) -> None:
                nonlocal stored
                done = await self.dht.put(record)
                if record.kind is Kind.VALUE:
                    stored = done.stored
            for record in records:
                nursery.start_soon(put, record)
        self.counters[f"published_{change.kind}"] += 1
        return stored

    def _value_record(self, version: Version, key: bytes, base: str,
                      digest: bytes | None) -> Record:
        if version.deleted:
            return self.dht.sign(Kind.VALUE, key, address=base, value=packb([]))
        value = b""
        if version.size + len(version.media_type) + 16 <= self.dht.max_value_bytes:
            try:
                _, data = self._content.get(version.address)
                value = packb([version.media_type, data])
            except (BzzzError, LookupError):
                value = b""  # deleted meanwhile: publish the hash; readers fetch or miss it
        if len(value) > self.dht.max_value_bytes or not value:
            return self.dht.sign(Kind.VALUE, key, address=base, content_hash=digest)
        return self.dht.sign(Kind.VALUE, key, address=base, value=value)

    def _mark_published(self, address: str) -> None:
        event = self._published.pop(address, None)
        if event is None:
            event = trio.Event()
        event.set()
        self._published[address] = event
        while len(self._published) > _PUBLISHED:
            self._published.popitem(last=False)

    async def wait_published(self, address: str, timeout: float) -> bool:
        """Wait until the version ``address`` (with ``*N``) was published; False on timeout."""
        event = self._published.get(address)
        if event is None:
            event = self._published[address] = trio.Event()
            while len(self._published) > _PUBLISHED:
                self._published.popitem(last=False)
        with trio.move_on_after(timeout):
            await event.wait()
        return event.is_set()

    # --- reading ------------------------------------------------------------------------------

    async def read(self, address: Address) -> tuple[NetworkVersion, bytes]:
        """The version ``address`` selects in the network, and its content.

        Raises:
            NoSuchVersion: the network knows fewer versions (0: none at all).
            NotFound: the selected version is a tombstone.
            BzzzError: no holder served content matching its hash in time.
        """
        try:
            with trio.fail_after(self.fetch_timeout):
                return await self._read(address)
        except trio.TooSlowError:
            self.counters["reads_timed_out"] += 1
            raise BzzzError(f"no answer from the network for {address.canonical} within "
                            f"{self.fetch_timeout:g}s (dht.fetch_timeout)") from None

    async def _read(self, address: Address) -> tuple[NetworkVersion, bytes]:
        key, base = address.content_key, base_of(address)
        if address.temporal == "latest":
            done = await self.dht.get(key, Kind.VALUE)
            if done.records:
                return await self._from_record(address, done.records[0])
        history = await self.history(address)
        selected = address.resolve(len(history))  # NoSuchVersion, with the count
        chosen = history[selected - 1]
        if chosen.deleted:
            raise NotFound(f"{chosen.address} is a deletion (tombstone); earlier versions are "
                           "kept", address=address.canonical, versions=len(history),
                           deleted=True)
        others = [h for v in history if v.hash == chosen.hash for h in v.holders]
        data = await self.fetch(base, bytes.fromhex(chosen.hash), [*chosen.holders, *others])
        return chosen, data

    async def _from_record(self, address: Address, record: Record) -> tuple[NetworkVersion,
                                                                             bytes]:
        base = base_of(address)
        author = format_node_id(record.publisher)
        if record.content_hash is not None:
            providers = await self.providers(record.key)
            data = await self.fetch(base, record.content_hash, [record.publisher, *providers])
            media_type = "application/octet-stream"
        else:
            try:
                item = msgpack.unpackb(record.value, raw=False)
            except (ValueError, msgpack.UnpackException):
                item = None
            if item == []:
                raise NotFound(f"{base} is deleted (its latest version, by {author[:15]}, is "
                               "a tombstone)", address=address.canonical, versions=0,
                               deleted=True)
            if (not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], str)
                    or not isinstance(item[1], bytes)):
                raise BzzzError(f"the value record of {base} by {author[:15]} is not "
                                "[media type, content]")
            media_type, data = item
        version = NetworkVersion(address=base, version=0, author=author,
                                 timestamp=record.timestamp_ms / 1000,
                                 hash=hashlib.sha256(data).hexdigest(), size=len(data),
                                 media_type=media_type, deleted=False,
                                 holders=(record.publisher,))
        return version, data

    async def providers(self, key: bytes) -> list[bytes]:
        """Node IDs that announced holding content under ``key`` (newest first)."""
        done = await self.dht.get(key, Kind.PROVIDER)
        return [r.publisher for r in done.records][:MAX_PROVIDERS]

    async def history(self, address: Address) -> list[NetworkVersion]:
        """Every version of ``address`` its providers (and we) hold, in the network's order."""
        base = base_of(address)
        holders = [p for p in await self.providers(address.content_key)
                   if p != self.dht.node_id]
        rows: list[tuple[bytes, list[Any]]] = [
            (self.dht.node_id, [[v.version, v.timestamp, v.hash, v.size, v.media_type,
                                 v.deleted] for v in self._content.history(base)])]

        async def ask(node: bytes) -> None:
            try:
                answer = await self.dht.request(node, "dht.history",
                                                     packb({"a": base}),
                                                     timeout=self.fetch_timeout / 2)
                items = msgpack.unpackb(answer, raw=False)
            except (ConnectionClosed, RequestFailed, ValueError, msgpack.UnpackException):
                self.counters["history_failed"] += 1
                return
            if isinstance(items, list):
                rows.append((node, items[:MAX_HISTORY]))

        async with trio.open_nursery() as nursery:
            for node in holders:
                nursery.start_soon(ask, node)
        return merge_histories(base, rows)

    async def fetch(self, base: str, digest: bytes, holders: Iterable[bytes]) -> bytes:
        """Content of hash ``digest`` from the first holder whose content matches it."""
        tried: set[bytes] = set()
        for node in holders:
            if node in tried or node == self.dht.node_id:
                continue
            tried.add(node)
            try:
                data = await self._fetch_from(node, base, digest)
            except (ConnectionClosed, RequestFailed, BzzzError) as exc:
                self.counters["fetch_failed"] += 1
                log.debug("DHT: fetching %s from %s failed: %s", base, short_id(node), exc)
                continue
            if hashlib.sha256(data).digest() == digest:
                self.counters["fetched"] += 1
                return data
            self.counters["content_mismatch"] += 1
            log.warning("DHT: %s served content for %s that does not match its hash; trying "
                        "the next holder", short_id(node), base,
                        extra={"event": "dht_content_rejected", "peer": short_id(node)})
        raise BzzzError(f"no holder of {base} (of {len(tried)} tried) served content "
                        f"matching hash {digest.hex()[:16]}")

    async def _fetch_from(self, node: bytes, base: str, digest: bytes) -> bytes:
        chunks: list[bytes] = []
        offset, size = 0, None
        while size is None or offset < size:
            answer = unpack_map(await self.dht.request(
                node, "dht.chunk", packb({"a": base, "h": digest, "o": offset}),
                timeout=self.fetch_timeout / 2))
            total, data = answer.get("s"), answer.get("d")
            if (not isinstance(total, int) or not isinstance(data, bytes)
                    or not 0 <= total <= self._max_content or (size is not None and total != size)
                    or (not data and offset < total) or offset + len(data) > total):
                raise BzzzError("a malformed chunk")
            size = total
            chunks.append(data)
            offset += len(data)
        return b"".join(chunks)

    # --- listing ------------------------------------------------------------------------------

    async def list_network(self, pattern: Address, *, limit: int = 100,
                           deleted: bool = False) -> dict[str, Any]:
        """The latest version of each match, over our store and every peer that answers
        within ``list_timeout``; ``complete`` says whether all of them did."""
        own, _ = self._content.list(pattern, limit=min(limit, MAX_LIST), deleted=deleted)
        found: dict[str, dict[str, Any]] = {}
        keep_newest(found, [v.as_dict() for v in own], self.dht.node_id)
        peers = list(dict.fromkeys([*self._manager.connections, *self.dht.members()]))
        peers = [p for p in peers if p != self.dht.node_id][:MAX_LIST_PEERS]
        answered = 0
        body = packb({"p": pattern.canonical, "l": min(limit, MAX_LIST), "d": deleted})

        async def ask(node: bytes) -> None:
            nonlocal answered
            try:
                items = msgpack.unpackb(await self.dht.request(
                    node, "dht.list", body, timeout=self.list_timeout), raw=False)
            except (ConnectionClosed, RequestFailed, ValueError, msgpack.UnpackException):
                return
            if isinstance(items, list):
                answered += 1
                keep_newest(found, items[:MAX_LIST], node)

        with trio.move_on_after(self.list_timeout):
            async with trio.open_nursery() as nursery:
                for node in peers:
                    nursery.start_soon(ask, node)
        items = sorted(found.values(), key=lambda v: str(v["address"]))[:limit]
        return {"items": items, "peers": len(peers), "answered": answered,
                "complete": answered == len(peers)}
