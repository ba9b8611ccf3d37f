"""LAN discovery over mDNS/DNS-SD as a trio service: announce ourselves, browse for peers.
Does network I/O (multicast UDP on port 5353, through zeroconf).

zeroconf runs its own asyncio loop in a thread, and its ``ServiceBrowser`` calls back from a
second thread. Those callbacks do nothing but hand ``(name, change)`` to trio through the trio
token and a memory channel. Everything that blocks (opening sockets, the probing and announcing
of our registration, resolving a peer's records, goodbyes and closing) runs in worker threads
through ``trio.to_thread``, never in trio's thread. Closing is bounded by a timeout, so a stuck
zeroconf cannot hold up the node's shutdown.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from collections.abc import Callable, Sequence
from functools import partial

import ifaddr
import trio
from zeroconf import Error as ZeroconfError
from zeroconf import (
    InterfaceChoice,
    IPVersion,
    ServiceBrowser,
    ServiceInfo,
    ServiceStateChange,
    Zeroconf,
)

from ..errors import LocalProtocolError
from ._book import DiscoveryEvent, PeerBook, Resolved
from ._records import SERVICE_TYPE, Announcement, encode_txt, instance_name

__all__ = ["MdnsDiscovery"]

log = logging.getLogger(__name__)

_Change = tuple[str, ServiceStateChange]
# Changes queue up here only while trio is busy; more than this many at once on a home LAN
# means something is flooding us, and dropping (counted) beats unbounded memory.
_CHANGE_BUFFER = 1024
_RESOLVER_THREADS = 4


class MdnsDiscovery:
    """Announce this node as ``_bzzz._tcp.local.`` and report the peers of our network.

    Read :attr:`events` for :class:`PeerFound` (also sent again when a peer's addresses, version
    or name change) and :class:`PeerLost`. Services announcing another network fingerprint, our
    own node ID, or malformed records are skipped and counted.

    Args:
        node_id: our 32-byte node ID.
        port: the TCP port peers should dial.
        network_fingerprint: ``identity.network_fingerprint(key)``, never the key itself.
        protocol_version: announced so peers can tell before dialling.
        name: an optional display name (at most 63 bytes of UTF-8).
        interfaces: IP addresses of the interfaces to use; ``None`` means all of them.
        advertise: the addresses to announce; by default the ``interfaces`` given, or else every
            non-loopback IPv4 address of the host.
        probe: check that our instance name is free before announcing (RFC 6762 probing). Off
            by default: probing costs over a second of the start-up budget, and the name
            derives from the node ID, so only two processes sharing one identity could clash.
            Our announcements set the cache-flush bit, so peers replace what a previous run of
            this node left in their caches.
        resolve_timeout: seconds to wait for a peer's TXT, SRV and address records.
        close_timeout: seconds allowed for goodbyes and closing zeroconf on shutdown.

    Raises:
        LocalProtocolError: an argument cannot be announced (the message names it).
    """

    def __init__(
        self,
        node_id: bytes,
        port: int,
        network_fingerprint: str,
        protocol_version: int = 1,
        name: str = "",
        *,
        interfaces: Sequence[str] | None = None,
        advertise: Sequence[str] | None = None,
        probe: bool = False,
        resolve_timeout: float = 3.0,
        close_timeout: float = 2.0,
        event_buffer: int = 64,
    ) -> None:
        self._txt = encode_txt(Announcement(node_id, protocol_version, network_fingerprint, name))
        if not 0 < port < 65536:
            raise LocalProtocolError(f"port must be 1..65535, got {port}")
        for address in [*(interfaces or ()), *(advertise or ())]:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise LocalProtocolError(f"{address!r} in interfaces/advertise is not an IP "
                                         "address") from None
        self._port = port
        self._instance = instance_name(node_id)
        self._interfaces = list(interfaces) if interfaces else None
        self._advertise = list(advertise) if advertise else None
        self._probe = probe
        self._resolve_timeout = resolve_timeout
        self._close_timeout = close_timeout
        self._book = PeerBook(node_id, network_fingerprint)
        self._send, self.events = trio.open_memory_channel[DiscoveryEvent](event_buffer)
        self._emit_lock = trio.Lock()  # keeps book order and channel order the same
        self._resolvers = trio.CapacityLimiter(_RESOLVER_THREADS)
        self._ran = False
        self.registered_name: str | None = None
        self.dropped_changes = 0

    @property
    def ignored_other_network(self) -> int:
        """Distinct services seen that announce another network's fingerprint."""
        return self._book.ignored_other_network

    @property
    def malformed(self) -> int:
        """Services whose records could not be parsed (each resolution counts)."""
        return self._book.malformed

    @property
    def unresolved(self) -> int:
        """Resolutions that timed out."""
        return self._book.unresolved

    def peers(self) -> dict[bytes, tuple[tuple[str, int], ...]]:
        """The peers announced right now and their addresses."""
        return {peer_id: found.addresses for peer_id, found in self._book.peers().items()}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Register and browse until cancelled; ready once registered and browsing.

        Raises:
            LocalProtocolError: run a second time (the events channel is closed by the first).
            OSError: the multicast sockets could not be opened.
        """
        if self._ran:
            raise LocalProtocolError("MdnsDiscovery.run can only be called once")
        self._ran = True
        token = trio.lowlevel.current_trio_token()
        changes_send, changes_recv = trio.open_memory_channel[_Change](_CHANGE_BUFFER)
        on_change = partial(self._on_change, token, changes_send)
        zc: Zeroconf | None = None
        browser: ServiceBrowser | None = None
        info: ServiceInfo | None = None
        try:
            opened = await trio.to_thread.run_sync(self._open, on_change)
            zc, browser, info = opened
            async with trio.open_nursery() as nursery:
                # Browsing runs while we register, so peers already out there are found meanwhile.
                nursery.start_soon(self._process, opened[0], changes_recv, nursery)
                await trio.to_thread.run_sync(self._register, opened[0], opened[2],
                                              abandon_on_cancel=True)
                self.registered_name = opened[2].name
                log.info("mDNS: announcing %s on port %d", opened[2].name, self._port)
                task_status.started()
        finally:
            changes_send.close()
            self._send.close()
            with trio.CancelScope(shield=True), trio.move_on_after(self._close_timeout) as scope:
                await trio.to_thread.run_sync(self._close, zc, browser, info,
                                              abandon_on_cancel=True)
            if scope.cancelled_caught:
                log.warning("mDNS: zeroconf did not close within %.1f s; left behind",
                            self._close_timeout)

    # --- worker threads --------------------------------------------------------------------------

    def _open(self, on_change: Callable[..., None]) -> tuple[Zeroconf, ServiceBrowser, ServiceInfo]:
        info = ServiceInfo(SERVICE_TYPE, f"{self._instance}.{SERVICE_TYPE}", port=self._port,
                           properties=self._txt, server=f"{self._instance}.local.",
                           parsed_addresses=self._advertised_ips())
        choice = self._interfaces if self._interfaces else InterfaceChoice.All
        ip_version = None if self._interfaces else IPVersion.V4Only  # a list says for itself
        zc = Zeroconf(interfaces=choice, ip_version=ip_version, use_asyncio=False)
        try:
            return zc, ServiceBrowser(zc, SERVICE_TYPE, handlers=[on_change]), info
        except BaseException:
            zc.close()
            raise

    def _register(self, zc: Zeroconf, info: ServiceInfo) -> None:
        zc.register_service(info, allow_name_change=True, cooperating_responders=not self._probe)

    def _resolve(self, zc: Zeroconf, name: str) -> Resolved | None:
        try:
            info = ServiceInfo(SERVICE_TYPE, name)
            if not info.request(zc, self._resolve_timeout * 1000):
                return None
        except Exception as exc:
            # Whatever a neighbour's records make zeroconf raise (or zeroconf closing under us)
            # must not end discovery: the name just stays unresolved.
            log.debug("mDNS: resolving %s failed: %r", name, exc)
            return None
        ips = sorted({ipaddress.ip_address(a.split("%")[0]): a
                      for a in info.parsed_scoped_addresses()}.items(),
                     key=lambda item: (item[0].version, item[0]))
        return Resolved(dict(info.properties), info.port, tuple(text for _, text in ips))

    def _close(self, zc: Zeroconf | None, browser: ServiceBrowser | None,
               info: ServiceInfo | None) -> None:
        if browser is not None:
            browser.cancel()
        if zc is None:
            return
        if info is not None and self.registered_name is not None:
            try:
                zc.unregister_service(info)  # goodbye packets, so peers drop us at once
            except ZeroconfError as exc:
                log.debug("mDNS: goodbye failed: %r", exc)
        try:
            zc.close()
        except Exception as exc:  # raising here would mask why run() is ending
            log.warning("mDNS: closing zeroconf failed: %r", exc)
            return
        log.info("mDNS: stopped")

    def _advertised_ips(self) -> list[str]:
        if self._advertise:
            return self._advertise
        if self._interfaces:
            return self._interfaces
        ips = sorted({ip.ip for adapter in ifaddr.get_adapters() for ip in adapter.ips
                      if isinstance(ip.ip, str) and not ipaddress.ip_address(ip.ip).is_loopback})
        return ips or ["127.0.0.1"]

    # --- zeroconf's browser thread ---------------------------------------------------------------

    def _on_change(self, token: trio.lowlevel.TrioToken, channel: trio.MemorySendChannel[_Change],
                   zeroconf: Zeroconf, service_type: str, name: str,
                   state_change: ServiceStateChange) -> None:
        # Never blocks: run_sync_soon only queues the hand-over for trio's thread.
        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(self._push, channel, (name, state_change))

    # --- trio's thread ---------------------------------------------------------------------------

    def _push(self, channel: trio.MemorySendChannel[_Change], change: _Change) -> None:
        # Runs as a trio callback: an exception here would crash the whole run.
        try:
            channel.send_nowait(change)
        except trio.WouldBlock:
            self.dropped_changes += 1
            level = logging.WARNING if self.dropped_changes == 1 else logging.DEBUG
            log.log(level, "mDNS: change queue full, dropped a change for %s", change[0])
        except trio.ClosedResourceError:
            pass

    async def _process(self, zc: Zeroconf, changes: trio.MemoryReceiveChannel[_Change],
                       nursery: trio.Nursery) -> None:
        async for name, state_change in changes:
            if state_change is ServiceStateChange.Removed:
                async with self._emit_lock:
                    await self._emit(self._book.removed(name))
            else:
                generation = self._book.changed(name)
                nursery.start_soon(self._resolve_and_report, zc, name, generation)

    async def _resolve_and_report(self, zc: Zeroconf, name: str,
                                  generation: int) -> None:
        result = await trio.to_thread.run_sync(self._resolve, zc, name, abandon_on_cancel=True,
                                               limiter=self._resolvers)
        async with self._emit_lock:
            await self._emit(self._book.resolved(name, generation, result))

    async def _emit(self, events: list[DiscoveryEvent]) -> None:
        for event in events:
            try:
                await self._send.send(event)
            except trio.BrokenResourceError:
                return  # nobody listens any more; keep discovering for peers()
