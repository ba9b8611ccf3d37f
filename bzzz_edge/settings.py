"""Typed configuration: one frozen dataclass per config section. No I/O.

``config.py`` reads and checks the values (defaults < file < environment < flags); this module
gives them types, so each component takes its own section (``NetworkSettings``, ...) rather than
a mapping of strings. Every default lives in one place, ``config.SCHEMA``; the dataclasses have
none, and a test checks that their fields are exactly the schema's keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, get_type_hints

__all__ = [
    "AgentSettings",
    "ApiSettings",
    "CoordinationSettings",
    "DhtSettings",
    "GossipSettings",
    "HealthSettings",
    "LogSettings",
    "MembershipSettings",
    "NetworkSettings",
    "NodeSettings",
    "Settings",
    "ShutdownSettings",
    "StorageSettings",
]


@dataclass(frozen=True, slots=True)
class NodeSettings:
    data_dir: str
    name: str
    profile: str
    heap_trim_interval: float
    heap_trim_growth_mb: float


@dataclass(frozen=True, slots=True)
class NetworkSettings:
    listen: str
    advertise: str
    key_file: str
    bootstrap_peers: tuple[str, ...]
    mdns: bool
    max_frame_size: int
    max_connections: int
    max_per_ip: int
    max_handshakes: int
    max_handshakes_per_ip: int
    max_inflight_requests: int
    handshake_timeout: float
    keepalive_interval: float
    send_queue: int
    replay_window: float


@dataclass(frozen=True, slots=True)
class GossipSettings:
    max_rate: float
    max_duplicate_rate: float
    # pub/sub service (gossip/service.py)
    max_message_size: int
    compress_min_size: int
    subscriber_buffer: int
    max_topics: int
    # router tunables: each overrides the node.profile preset when set (gossip.RouterConfig)
    heartbeat_interval: float
    mesh_degree: int
    mesh_low: int
    mesh_high: int
    lazy_degree: int
    gossip_windows: int
    refresh_interval: float
    history: float
    cache_bytes: int
    max_ihave_ids: int
    max_iwant_ids: int
    max_retransmissions: int
    iwant_timeout: float
    max_hops: int
    dedup_entries: int
    ban_score: float


@dataclass(frozen=True, slots=True)
class ApiSettings:
    listen: str
    token: str
    token_file: str


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: str
    format: str


@dataclass(frozen=True, slots=True)
class ShutdownSettings:
    deadline: float
    component_timeout: float


@dataclass(frozen=True, slots=True)
class HealthSettings:
    interval: float
    timeout: float
    grace_period: float
    memory_max_percent: float
    disk_min_free_mb: int
    critical: tuple[str, ...]
    min_peers: int


@dataclass(frozen=True, slots=True)
class MembershipSettings:
    """Each overrides the ``node.profile`` timing when set (see ``membership.profile``)."""

    probe_interval: float
    probe_timeout_min: float
    probe_timeout_max: float
    probe_timeout_initial: float
    indirect_checks: int
    suspicion_mult: int
    suspicion_base: float
    suspicion_max_timeout_mult: int
    suspicion_rto_mult: int
    gossip_interval: float
    push_pull_interval: float
    max_members: int
    max_unverified_members: int
    unverified_member_ttl: float


@dataclass(frozen=True, slots=True)
class StorageSettings:
    map_size_mb: int
    max_content_bytes: int
    compress_min_bytes: int


@dataclass(frozen=True, slots=True)
class DhtSettings:
    k: int
    alpha: int
    rpc_timeout: float
    lookup_deadline: float
    hedge_delay: float
    refresh_interval: float
    record_ttl: float
    republish_interval: float
    replicate_interval: float
    max_records: int
    max_records_per_publisher: int
    max_value_bytes: int
    peer_rate: float
    peer_burst: int
    fetch_timeout: float
    list_timeout: float


@dataclass(frozen=True, slots=True)
class CoordinationSettings:
    voters: int
    dead_after: float
    bootstrap_wait: float
    proposal_timeout: float
    heartbeat_interval: float
    election_timeout_min: float
    election_timeout_max: float


@dataclass(frozen=True, slots=True)
class AgentSettings:
    roles: tuple[str, ...]
    capabilities: tuple[str, ...]
    capacity: int
    custom_roles: tuple[str, ...]
    release_after: float
    availability_interval: float
    finished_retention: float


@dataclass(frozen=True, slots=True)
class Settings:
    """Every section, typed."""

    node: NodeSettings
    network: NetworkSettings
    gossip: GossipSettings
    api: ApiSettings
    log: LogSettings
    shutdown: ShutdownSettings
    health: HealthSettings
    membership: MembershipSettings
    storage: StorageSettings
    dht: DhtSettings
    coordination: CoordinationSettings
    agent: AgentSettings

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> Settings:
        """Build from checked ``section.key`` values (``Config.values``)."""
        sections = {}
        for section in fields(cls):
            kind = _SECTIONS[section.name]
            sections[section.name] = kind(**{
                f.name: values[f"{section.name}.{f.name}"] for f in fields(kind)})
        return cls(**sections)


#: Each section's dataclass, read off ``Settings``' own annotations.
_SECTIONS: dict[str, Any] = get_type_hints(Settings)
