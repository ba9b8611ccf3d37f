"""Every configuration key, declared once: its section and name, the value type it takes (a
converter that turns a TOML value, or a string from the environment or a flag, into a checked
value), its default, its help line, whether SIGHUP may change it at run time and whether it is
secret. No I/O (beyond expanding a path's ``~`` from HOME).

Adding a key is one ``Key(...)`` line in ``SCHEMA``: loading, ``config show``, the template,
the environment variable and the ``--set`` flag all follow from it.
"""

from __future__ import annotations

import ipaddress
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ENV_PREFIX",
    "KEYS_BY_DOTTED",
    "KEYS_BY_ENV",
    "SCHEMA",
    "SCHEMA_DEFAULTS",
    "Converter",
    "Key",
    "is_loopback",
    "parse_hostport",
]

ENV_PREFIX = "BZZZ_EDGE_"


def parse_hostport(text: str) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` for IPv6) and check both parts."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError("expected host:port, e.g. 127.0.0.1:7341")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"port {port_text!r} is not a number from 0 to 65535")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        try:
            host.encode("idna")  # refuses empty labels ("a..b") and other malformed names
        except UnicodeError:
            raise ValueError(f"{host!r} is neither an IP address nor a valid host name") from None
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- value types: each turns a TOML value or a string from env/flags into a checked value ---

Converter = Callable[[Any, bool], Any]  # (value, from_text) -> checked value; raises ValueError


def _str(value: Any, from_text: bool) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def _bool(value: Any, from_text: bool) -> bool:
    if isinstance(value, bool):
        return value
    if from_text and isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
    raise ValueError("expected a boolean (true/false)")


def _number(kind: type, low: float | None, high: float | None) -> Converter:
    expected = "expected an integer" if kind is int else "expected a number"

    def convert(value: Any, from_text: bool) -> Any:
        if from_text and isinstance(value, str):
            try:
                value = kind(value.strip())
            except ValueError:
                raise ValueError(expected) from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(expected)
        if not math.isfinite(value):
            raise ValueError(f"{expected}, not {value}")
        if kind is int and not isinstance(value, int):
            raise ValueError("expected an integer")
        if (low is not None and value < low) or (high is not None and value > high):
            raise ValueError(f"expected a value from {low} to {high}")
        return kind(value)

    return convert


def _choice(*options: str) -> Converter:
    def convert(value: Any, from_text: bool) -> str:
        if not isinstance(value, str) or value.lower() not in options:
            raise ValueError(f"expected one of {', '.join(options)}")
        return value.lower()

    return convert


def _hostport(value: Any, from_text: bool) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string host:port")
    parse_hostport(value)
    return value


def _ip_or_empty(value: Any, from_text: bool) -> str:
    if not isinstance(value, str):
        raise ValueError("expected an IP address as a string")
    if not value:
        return value
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise ValueError("expected an IP address (host names are not gossiped)") from None
    if address.is_unspecified:
        raise ValueError("expected an address peers can dial, not an unspecified one")
    return value


def _str_list(value: Any, from_text: bool) -> tuple[str, ...]:
    if from_text and isinstance(value, str):
        value = [item.strip() for item in value.split(",") if item.strip()]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a list of strings (comma-separated in env and flags)")
    return tuple(value)


def _hostport_list(value: Any, from_text: bool) -> tuple[str, ...]:
    items = _str_list(value, from_text)
    for item in items:
        try:
            parse_hostport(item)
        except ValueError as exc:
            raise ValueError(f"{item!r}: {exc}") from None
    return items


def _path(value: Any, from_text: bool) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("expected a file system path")
    return str(Path(value).expanduser())


def _map_size_mb(value: Any, from_text: bool) -> int:
    """An initial map size the platform can map (see store/_platform.py for the ceiling)."""
    from ..store._platform import MIB, map_ceiling, pointer_bits

    size: int = _number(int, 1, 2**20)(value, from_text)
    ceiling = map_ceiling() // MIB
    if size > ceiling:
        raise ValueError(f"expected at most {ceiling} MiB on this {pointer_bits()}-bit system "
                         "(the store's map must leave address space for the process)")
    return size


def _odd_voters(value: Any, from_text: bool) -> int:
    """coordination.voters: an odd count (an even one tolerates no more failures)."""
    voters: int = _number(int, 1, 99)(value, from_text)
    if voters % 2 == 0:
        raise ValueError(f"expected an odd number (1, 3, 5, ...), got {voters}")
    return voters


@dataclass(frozen=True, slots=True)
class Key:
    """One configuration key: its type, default and documentation."""

    section: str
    name: str
    convert: Converter
    default: Any
    help: str
    reloadable: bool = False
    secret: bool = False

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.name}"

    @property
    def env_name(self) -> str:
        return f"{ENV_PREFIX}{self.section.upper()}_{self.name.upper()}"


def _role_names(value: Any, from_text: bool) -> tuple[str, ...]:
    names = _str_list(value, from_text)
    for name in names:
        if not name or len(name) > 64 or any(c.isspace() or c == "=" for c in name):
            raise ValueError(f"{name!r}: a role name is 1 to 64 characters, no spaces or '='")
    return names


def _custom_roles(value: Any, from_text: bool) -> tuple[str, ...]:
    """agent.custom_roles: ``NAME=PATTERN [PATTERN ...]`` each (``;`` separates them in env
    and flags, since patterns may hold commas)."""
    if from_text and isinstance(value, str):
        value = [item.strip() for item in value.split(";") if item.strip()]
    items = _str_list(value, False)
    for item in items:
        name, sep, patterns = item.partition("=")
        if not sep or not name.strip() or not patterns.split():
            raise ValueError(f"{item!r}: expected NAME=PATTERN [PATTERN ...]")
        _role_names([name.strip()], False)
    return items


_64BIT = sys.maxsize > 2**32

SCHEMA: tuple[Key, ...] = (
    Key("node", "data_dir", _path, "", "data directory (identity, config, store); "
        "default /var/lib/bzzz-edge for root, else ~/.local/share/bzzz-edge"),
    Key("node", "name", _str, "", "a human-friendly name shown to peers (default: host name)"),
    Key("node", "profile", _choice("lan", "local"), "lan",
        "timing preset: lan (home network) or local (all nodes on one machine)"),
    Key("node", "heap_trim_interval", _number(float, 0, 3600), 2.0,
        "seconds between looks at whether a burst of work left free C heap to give back to "
        "the system (glibc's malloc_trim, once the node is quiet); 0: never"),
    Key("node", "heap_trim_growth_mb", _number(float, 0.1, 65536), 0.5,
        "MB the resident size must grow by since the last trim before the next one"),
    Key("network", "listen", _hostport, "0.0.0.0:7340", "address for peer connections"),
    Key("network", "advertise", _ip_or_empty, "", "IP address peers should dial us at "
        "(default: the listen address, or, listening on all, the address peers see)"),
    Key("network", "key_file", _path, "", "network key file (default <data_dir>/network.key)"),
    Key("network", "bootstrap_peers", _hostport_list, (), "static peers host:port, "
        "for networks where multicast does not pass"),
    Key("network", "mdns", _bool, True, "discover peers on the LAN with mDNS"),
    Key("network", "max_frame_size", _number(int, 1024, 64 * 1024 * 1024), 1024 * 1024,
        "largest frame accepted from a peer, in bytes"),
    Key("network", "max_connections", _number(int, 1, 65536), 256, "most peer connections"),
    Key("network", "max_per_ip", _number(int, 1, 65536), 64,
        "most simultaneous connections and handshakes from one IP address"),
    Key("network", "max_handshakes", _number(int, 1, 65536), 64,
        "most handshakes in progress at once (the rest are refused until one ends)"),
    Key("network", "max_handshakes_per_ip", _number(int, 1, 65536), 8,
        "most handshakes in progress at once from one IP address"),
    Key("network", "max_inflight_requests", _number(int, 1, 65536), 64,
        "RPC requests served at once for one peer; more are answered 'busy'"),
    Key("network", "handshake_timeout", _number(float, 0.1, 120), 5.0,
        "seconds a connection may take to authenticate"),
    Key("network", "keepalive_interval", _number(float, 0.05, 600), 2.0,
        "seconds without another frame sent before a keepalive; ten without one received close "
        "the connection"),
    Key("network", "send_queue", _number(int, 1, 1_000_000), 1024,
        "frames queued per connection before sends are dropped"),
    Key("network", "replay_window", _number(float, 1, 3600), 60.0,
        "seconds a signed message's timestamp may differ from our clock"),
    Key("gossip", "max_rate", _number(float, 1, 1e6), 5000.0,
        "gossip messages a second one peer may make us check (bursts of twice that)"),
    Key("gossip", "max_duplicate_rate", _number(float, 1, 1e6), 1000.0,
        "duplicate gossip messages a second one peer may send before they count against it"),
    Key("gossip", "max_message_size", _number(int, 1, 16 * 1024 * 1024), 256 * 1024,
        "largest message body published or delivered, in bytes before compression"),
    Key("gossip", "compress_min_size", _number(int, 0, 2**31), 1024,
        "bodies of at least this many bytes are compressed (LZ4 compiled, else zlib)"),
    Key("gossip", "subscriber_buffer", _number(int, 1, 1_000_000), 1024,
        "deliveries queued per subscriber; past that the oldest is dropped and counted"),
    Key("gossip", "max_topics", _number(int, 4, 65536), 256,
        "topics this node joins at most (standard and dynamic)"),
    # Pub/sub router timings and caps: each overrides the node.profile value when set.
    Key("gossip", "heartbeat_interval", _number(float, 0.01, 60), 0.2,
        "seconds between heartbeats: mesh upkeep and lazy repair (IHAVE)"),
    Key("gossip", "mesh_degree", _number(int, 1, 64), 6,
        "D: mesh peers per topic once a topic has more than mesh_high subscribed peers"),
    Key("gossip", "mesh_low", _number(int, 1, 64), 4,
        "below this many mesh peers a heartbeat grafts up to mesh_degree"),
    Key("gossip", "mesh_high", _number(int, 1, 256), 12,
        "above this many mesh peers a heartbeat prunes to mesh_degree; up to it every "
        "subscribed peer is in the mesh"),
    Key("gossip", "lazy_degree", _number(int, 1, 64), 3,
        "peers outside the mesh each recent message ID is announced to per heartbeat"),
    Key("gossip", "gossip_windows", _number(int, 1, 100), 3,
        "heartbeats a message is announced for"),
    Key("gossip", "refresh_interval", _number(float, 0.05, 3600), 5.0,
        "seconds between re-sending our subscriptions and neighbours to every peer, with "
        "anti-entropy over the message cache"),
    Key("gossip", "history", _number(float, 0.1, 3600), 10.0,
        "seconds a message stays in the cache for repair (IWANT)"),
    Key("gossip", "cache_bytes", _number(int, 65536, 4 * 1024**3), 16 * 1024 * 1024,
        "the message cache's bound in bytes"),
    Key("gossip", "max_ihave_ids", _number(int, 1, 1_000_000), 5000,
        "message IDs one peer may announce to us per heartbeat; more count against it"),
    Key("gossip", "max_iwant_ids", _number(int, 1, 1_000_000), 1000,
        "message IDs one peer may ask us for per heartbeat; more count against it"),
    Key("gossip", "max_retransmissions", _number(int, 1, 100), 3,
        "times one message is resent to one peer on request"),
    Key("gossip", "iwant_timeout", _number(float, 0.01, 60), 0.5,
        "seconds an asked-for message may take before another peer is asked"),
    Key("gossip", "max_hops", _number(int, 1, 255), 32,
        "relays a message may cross on topics that set no hop limit"),
    Key("gossip", "dedup_entries", _number(int, 1024, 1 << 22), 65_536,
        "message IDs the dedup cache remembers (about 60 bytes each where compiled); a "
        "replay older than the cache is still refused by each origin's sequence window"),
    Key("gossip", "ban_score", _number(float, 1, 1e6), 100.0,
        "how far a peer's score may fall through offences before it is banned"),
    Key("api", "listen", _hostport, "127.0.0.1:7341", "HTTP API address; a non-loopback "
        "address needs api.token"),
    Key("api", "token", _str, "", "bearer token the HTTP API requires (empty: none, loopback only)",
        secret=True),
    Key("api", "token_file", _path, "", "file holding api.token (0600, ours), so the token "
        "need not appear in a command line or the environment; api.token wins when both are set"),
    Key("log", "level", _choice("debug", "info", "warning", "error"), "info", "log level",
        reloadable=True),
    Key("log", "format", _choice("auto", "text", "json"), "auto",
        "text lines, JSON lines, or auto (text on a terminal, JSON otherwise)"),
    Key("shutdown", "deadline", _number(float, 0.1, 600), 10.0,
        "seconds after a stop signal when the process exits whatever is still running"),
    Key("shutdown", "component_timeout", _number(float, 0.05, 600), 5.0,
        "default seconds each component gets to stop"),
    Key("health", "interval", _number(float, 0.05, 3600), 10.0, "seconds between checks",
        reloadable=True),
    Key("health", "timeout", _number(float, 0.05, 600), 5.0, "seconds a check may take",
        reloadable=True),
    Key("health", "grace_period", _number(float, 0, 86400), 60.0, "seconds a critical check "
        "may keep failing before the node shuts down", reloadable=True),
    Key("health", "memory_max_percent", _number(float, 1, 100), 95.0,
        "system memory use above which the memory check fails", reloadable=True),
    Key("health", "disk_min_free_mb", _number(int, 0, 2**40), 100,
        "free space under the data directory below which the disk check fails", reloadable=True),
    Key("health", "critical", _str_list, ("disk", "storage"),
        "checks whose persistent failure stops the node"),
    Key("health", "min_peers", _number(int, 0, 65536), 0,
        "alive peers needed before the node reports ready (and the p2p check passes)",
        reloadable=True),
    # Membership timings and caps: each overrides the node.profile value when set.
    Key("membership", "probe_interval", _number(float, 0.01, 60), 0.5,
        "seconds between probes; each probes one member"),
    Key("membership", "probe_timeout_min", _number(float, 0.001, 60), 0.05,
        "floor of the probe timeout (otherwise SRTT + 4 RTTVAR of each peer)"),
    Key("membership", "probe_timeout_max", _number(float, 0.01, 120), 3.0,
        "ceiling of the probe timeout"),
    Key("membership", "probe_timeout_initial", _number(float, 0.001, 120), 0.5,
        "probe timeout of a peer not measured yet"),
    Key("membership", "indirect_checks", _number(int, 1, 16), 3,
        "members asked to probe a member that missed its direct ack"),
    Key("membership", "suspicion_mult", _number(int, 1, 100), 5,
        "shortest suspicion, in suspicion_base units (scaled by log10 of the cluster size)"),
    Key("membership", "suspicion_base", _number(float, 0.005, 60), 0.25,
        "seconds: the unit of the shortest suspicion"),
    Key("membership", "suspicion_max_timeout_mult", _number(int, 1, 100), 4,
        "a suspicion nobody confirms lasts this many times the shortest"),
    Key("membership", "suspicion_rto_mult", _number(int, 1, 100), 3,
        "shortest suspicion, in probe timeouts of the suspect (for slow links)"),
    Key("membership", "gossip_interval", _number(float, 0.005, 60), 0.1,
        "seconds between gossip rounds while there is news"),
    Key("membership", "push_pull_interval", _number(float, 0.1, 86400), 15.0,
        "seconds between full state exchanges with a random member"),
    Key("membership", "max_members", _number(int, 2, 65536), 1024,
        "most members remembered"),
    Key("membership", "max_unverified_members", _number(int, 1, 65536), 256,
        "most members remembered that never contacted us themselves"),
    Key("membership", "unverified_member_ttl", _number(float, 1, 86400), 60.0,
        "seconds until such a member is forgotten"),
    Key("storage", "map_size_mb", _map_size_mb, 1024 if _64BIT else 128,
        "initial LMDB map size in MiB (grows when full, up to 1024 on 32-bit systems)"),
    Key("storage", "max_content_bytes", _number(int, 1, 256 * 2**20), 16 * 2**20,
        "largest content one UCXL version may hold (larger PUTs get 413 before being read)"),
    Key("storage", "compress_min_bytes", _number(int, 0, 2**30), 256,
        "content at least this large is stored compressed when that saves 5 %"),
    # The Kademlia DHT (issue 13).
    Key("dht", "k", _number(int, 1, 64), 20, "bucket size and replication factor"),
    Key("dht", "alpha", _number(int, 1, 16), 3, "lookup RPCs in flight per path"),
    Key("dht", "rpc_timeout", _number(float, 0.01, 60), 0.5,
        "seconds a DHT RPC may take before its peer is dropped from the lookup"),
    Key("dht", "lookup_deadline", _number(float, 0.05, 600), 5.0,
        "seconds a lookup may take in all"),
    Key("dht", "hedge_delay", _number(float, 0.001, 60), 0.05,
        "seconds a get waits on the nearest node alone before asking alpha per path"),
    Key("dht", "refresh_interval", _number(float, 1, 86400), 3600.0,
        "seconds after which a bucket no lookup touched is refreshed"),
    Key("dht", "record_ttl", _number(float, 1, 30 * 86400), 86400.0,
        "seconds a record held for others lives after it was last stored"),
    Key("dht", "republish_interval", _number(float, 1, 30 * 86400), 3600.0,
        "seconds between republications of this node's own records"),
    Key("dht", "replicate_interval", _number(float, 1, 30 * 86400), 3600.0,
        "seconds between re-replications of the records held for others"),
    Key("dht", "max_records", _number(int, 1, 2**24), 65536,
        "records held for others, in all"),
    Key("dht", "max_records_per_publisher", _number(int, 1, 2**24), 4096,
        "records held for one publisher"),
    Key("dht", "max_value_bytes", _number(int, 0, 16384), 16384,
        "largest value carried in a record (larger content is fetched from a provider)"),
    Key("dht", "peer_rate", _number(float, 0.1, 1e6), 50.0,
        "DHT requests a second one peer may make of us"),
    Key("dht", "peer_burst", _number(int, 1, 1_000_000), 100,
        "DHT requests one peer may make at once"),
    Key("dht", "fetch_timeout", _number(float, 0.1, 600), 10.0,
        "seconds a network read (lookup, history, content) may take in all"),
    Key("dht", "list_timeout", _number(float, 0.1, 600), 2.0,
        "seconds a network listing (ls --network) waits for peers"),
    Key("coordination", "voters", _odd_voters, 5,
        "how many nodes vote in coordinator elections (odd; the others follow as learners)"),
    Key("coordination", "dead_after", _number(float, 0.1, 86400), 30.0,
        "seconds a voter may be dead before a live learner replaces it"),
    Key("coordination", "bootstrap_wait", _number(float, 0, 3600), 2.0,
        "seconds a node in no coordination group waits for one before founding its own"),
    Key("coordination", "proposal_timeout", _number(float, 0.01, 3600), 5.0,
        "seconds a proposal may take to commit before it fails with a timeout"),
    # Coordination timings: each overrides the node.profile value when set.
    Key("coordination", "heartbeat_interval", _number(float, 0.001, 60), 0.4,
        "seconds between the coordinator's heartbeats to voters"),
    Key("coordination", "election_timeout_min", _number(float, 0.005, 600), 1.0,
        "shortest silence of the coordinator after which a voter starts an election"),
    Key("coordination", "election_timeout_max", _number(float, 0.01, 600), 2.0,
        "longest such silence (each voter picks at random in between)"),
    Key("agent", "roles", _role_names, (), "this node's roles (built in: backend, frontend, "
        "devops, qa; or one of agent.custom_roles): what it may claim"),
    Key("agent", "capabilities", _str_list, (), "this node's capabilities (e.g. python, gpu): "
        "a task needing one it lacks is not claimed"),
    Key("agent", "capacity", _number(int, 0, 100_000), 4,
        "how many tasks this node holds at once at most"),
    Key("agent", "custom_roles", _custom_roles, (), "roles defined here, each "
        "'NAME=PATTERN PATTERN ...' (directory-scope globs); one named as a built-in replaces it"),
    Key("agent", "release_after", _number(float, 0.1, 30 * 86400), 30.0,
        "seconds a task's owner may be dead before the coordinator releases its tasks"),
    Key("agent", "availability_interval", _number(float, 1, 86400), 30.0,
        "seconds between this node's availability broadcasts (also sent at once on change)",
        reloadable=True),
    Key("agent", "finished_retention", _number(float, 1.0, 10 * 365 * 86400), 86400.0,
        "seconds a completed or failed task is kept before the coordinator expires it"),
)

KEYS_BY_DOTTED: Mapping[str, Key] = {key.dotted: key for key in SCHEMA}
SCHEMA_DEFAULTS: Mapping[str, Any] = {key.dotted: key.default for key in SCHEMA}
KEYS_BY_ENV: Mapping[str, Key] = {key.env_name: key for key in SCHEMA}
