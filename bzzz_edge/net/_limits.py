"""The tunables of the transport (``NetLimits``), shared by the parts of its trio shell: the
manager, the dialler and every connection; and fitting them to the process's limit of open
files, read with ``getrlimit``."""

from __future__ import annotations

import dataclasses
import logging
import resource
from dataclasses import dataclass
from typing import Any

from ..config import SCHEMA_DEFAULTS
from ..settings import NetworkSettings

__all__ = ["NetLimits", "fit_descriptors"]

log = logging.getLogger(__name__)

_FD_RESERVE = 64  # descriptors kept for the store, the API, logs and mDNS


def _default(key: str) -> Any:
    return SCHEMA_DEFAULTS[f"network.{key}"]


@dataclass(frozen=True, slots=True)
class NetLimits:
    """Tunables of the transport. Those that are config keys default to the config's defaults
    (``config.SCHEMA`` is the one place for them); the rest are transport policy."""

    max_frame_size: int = _default("max_frame_size")
    send_queue: int = _default("send_queue")
    send_queue_bytes: int = 16 * 1024 * 1024
    keepalive_interval: float = _default("keepalive_interval")
    # Silence for this many intervals closes the connection. Generous, because on a lossy
    # link (Wi-Fi, powerline) TCP's retransmission backoff alone can stall a healthy
    # connection for several seconds (five losses of one segment: 6.2 s), and a close costs a
    # reconnect and a membership probe; a peer that is really gone is found by membership.
    keepalive_misses: int = 10
    max_malformed: int = 10  # malformed envelopes tolerated before the peer is disconnected
    handshake_timeout: float = _default("handshake_timeout")
    write_timeout: float = 10.0  # a write that makes no progress this long closes the link
    max_connections: int = _default("max_connections")
    max_per_ip: int = _default("max_per_ip")
    max_handshakes: int = _default("max_handshakes")
    max_handshakes_per_ip: int = _default("max_handshakes_per_ip")
    max_inflight_requests: int = _default("max_inflight_requests")
    max_frames_per_second: float = 5_000.0  # from one peer; past it we stop reading a while
    backoff_initial: float = 0.1
    backoff_max: float = 10.0
    dial_give_up: float = 300.0  # an address that never answered is forgotten after this

    @classmethod
    def from_settings(cls, network: NetworkSettings) -> NetLimits:
        return cls(max_frame_size=network.max_frame_size, send_queue=network.send_queue,
                   keepalive_interval=network.keepalive_interval,
                   handshake_timeout=network.handshake_timeout,
                   max_connections=network.max_connections, max_per_ip=network.max_per_ip,
                   max_handshakes=network.max_handshakes,
                   max_handshakes_per_ip=network.max_handshakes_per_ip,
                   max_inflight_requests=network.max_inflight_requests)


def fit_descriptors(limits: NetLimits) -> NetLimits:
    """Lower ``max_connections`` so that connections and handshakes fit the descriptor limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return limits
    room = soft - _FD_RESERVE - limits.max_handshakes
    if limits.max_connections <= room:
        return limits
    fitted = max(room, 8)
    log.warning("network.max_connections lowered from %d to %d to fit the limit of %d open "
                "files (raise LimitNOFILE / ulimit -n to allow more)", limits.max_connections,
                fitted, soft)
    return dataclasses.replace(limits, max_connections=fitted)
