"""Typed configuration: defaults < TOML file < BZZZ_EDGE_* environment < command-line flags.

Does I/O: the only module that reads configuration files and environment variables.
Every key is declared
once in ``SCHEMA`` with its type, default, validation and whether SIGHUP may change it at run
time; unknown keys and bad values raise ``ConfigError`` naming the key, the value and what was
expected. Each effective value remembers where it came from, for ``bzzz-edge config show``.
"""

from __future__ import annotations

import ipaddress
import math
import os
import socket
import sys
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .settings import Settings

__all__ = [
    "ENV_PREFIX",
    "SCHEMA",
    "SCHEMA_DEFAULTS",
    "Config",
    "ConfigSource",
    "Key",
    "default_data_dir",
    "load_config",
    "parse_hostport",
    "systemd_environment",
]

ENV_PREFIX = "BZZZ_EDGE_"
# Environment variables with the prefix that are not configuration keys.
_NON_KEY_ENV = {"PURE", "REQUIRE_NATIVE", "CONFIG", "NATIVE_MODULES"}
CONFIG_FILE_NAME = "config.toml"


def default_data_dir() -> Path:
    """Where a node keeps its identity, config and store unless told otherwise."""
    if os.geteuid() == 0:
        return Path("/var/lib/bzzz-edge")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "bzzz-edge"


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


def _is_loopback(host: str) -> bool:
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
    from .store._platform import MIB, map_ceiling, pointer_bits

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


_64BIT = sys.maxsize > 2**32

SCHEMA: tuple[Key, ...] = (
    Key("node", "data_dir", _path, "", "data directory (identity, config, store); "
        "default /var/lib/bzzz-edge for root, else ~/.local/share/bzzz-edge"),
    Key("node", "name", _str, "", "a human-friendly name shown to peers (default: host name)"),
    Key("node", "profile", _choice("lan", "local"), "lan",
        "timing preset: lan (home network) or local (all nodes on one machine)"),
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
        "seconds between keepalives; ten missed ones close the connection"),
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
    Key("gossip", "refresh_interval", _number(float, 0.05, 3600), 1.0,
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
    Key("membership", "probe_interval", _number(float, 0.01, 60), 0.25,
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
        "shortest suspicion, in probe intervals (scaled by log10 of the cluster size)"),
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
    Key("coordination", "voters", _odd_voters, 5,
        "how many nodes vote in coordinator elections (odd; the others follow as learners)"),
    Key("coordination", "dead_after", _number(float, 0.1, 86400), 30.0,
        "seconds a voter may be dead before a live learner replaces it"),
    Key("coordination", "bootstrap_wait", _number(float, 0, 3600), 2.0,
        "seconds a node in no coordination group waits for one before founding its own"),
    Key("coordination", "proposal_timeout", _number(float, 0.01, 3600), 5.0,
        "seconds a proposal may take to commit before it fails with a timeout"),
)

_BY_DOTTED = {key.dotted: key for key in SCHEMA}
SCHEMA_DEFAULTS: Mapping[str, Any] = {key.dotted: key.default for key in SCHEMA}
_BY_ENV = {key.env_name: key for key in SCHEMA}


@dataclass(frozen=True, slots=True)
class ConfigSource:
    """Where a value came from: default, file (with path), env (with variable) or flag."""

    kind: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.kind} {self.detail}".strip()


@dataclass(frozen=True, slots=True)
class Config:
    """The effective configuration: checked values and their sources."""

    values: Mapping[str, Any]
    sources: Mapping[str, ConfigSource]
    file: Path | None = None
    _inputs: tuple[Any, ...] = field(default=(), repr=False, compare=False)

    def __getitem__(self, dotted: str) -> Any:
        return self.values[dotted]

    @property
    def settings(self) -> Settings:
        """The values as typed sections (what components take)."""
        return Settings.from_values(self.values)

    @property
    def data_dir(self) -> Path:
        return Path(self.values["node.data_dir"])

    @property
    def network_key_file(self) -> Path:
        return Path(self.values["network.key_file"] or self.data_dir / "network.key")

    @property
    def identity_file(self) -> Path:
        return self.data_dir / "identity.key"

    def secrets(self) -> list[str]:
        """Secret values, so the log filter can keep them out of every line."""
        return [self.values[k.dotted] for k in SCHEMA if k.secret and self.values[k.dotted]]

    def reload(self) -> Config:
        """Read the file and environment again, keeping the original flags."""
        flags, environ = self._inputs
        return load_config(flags=flags, environ=environ, config_file=self.file)

    def describe(self) -> list[tuple[str, str, str]]:
        """(key, shown value, source) rows; secrets are masked."""
        rows = []
        for key in SCHEMA:
            value = self.values[key.dotted]
            shown = "********" if key.secret and value else _format_value(value)
            rows.append((key.dotted, shown, str(self.sources[key.dotted])))
        return rows


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def _checked(key: Key, value: Any, from_text: bool, where: str) -> Any:
    try:
        return key.convert(value, from_text)
    except ValueError as exc:
        shown = "(hidden)" if key.secret else repr(value)
        raise ConfigError(
            f"{where}: bad value {shown} for {key.dotted}: {exc}", key=key.dotted
        ) from None


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
    flat: dict[str, Any] = {}
    for section, body in data.items():
        if not isinstance(body, dict):
            raise ConfigError(f"{path}: {section!r} must be a [section] table", key=section)
        for name, value in body.items():
            dotted = f"{section}.{name}"
            if dotted not in _BY_DOTTED:
                raise ConfigError(f"{path}: unknown key {dotted}{_suggest(dotted)}", key=dotted)
            flat[dotted] = value
    return flat


def _suggest(dotted: str) -> str:
    import difflib

    close = difflib.get_close_matches(dotted, list(_BY_DOTTED), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def load_config(
    *,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: Path | str | None = None,
) -> Config:
    """Build the effective configuration.

    Args:
        flags: dotted key -> value given on the command line (strings are parsed like env).
        environ: the environment to read (default ``os.environ``).
        config_file: an explicit TOML file; otherwise ``$BZZZ_EDGE_CONFIG`` or
            ``<data_dir>/config.toml`` when it exists.

    Raises:
        ConfigError: an unknown key, a bad value, an unreadable file or an unsafe combination.
    """
    flags = dict(flags or {})
    environ = dict(os.environ if environ is None else environ)
    values = {key.dotted: key.default for key in SCHEMA}
    sources = {key.dotted: ConfigSource("default") for key in SCHEMA}

    env_values: dict[str, tuple[Any, str]] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name[len(ENV_PREFIX):] in _NON_KEY_ENV:
            continue
        key = _BY_ENV.get(name)
        if key is None:
            raise ConfigError(f"environment: unknown variable {name}", key=name)
        env_values[key.dotted] = (_checked(key, raw, True, f"environment {name}"), name)
    flag_values = {}
    for dotted, raw in flags.items():
        key = _BY_DOTTED.get(dotted)
        if key is None:
            raise ConfigError(f"command line: unknown key {dotted}{_suggest(dotted)}", key=dotted)
        flag_values[dotted] = _checked(key, raw, isinstance(raw, str), "command line")

    # The data dir locates the config file, so settle it from env and flags first.
    data_dir = (flag_values.get("node.data_dir")
                or env_values.get("node.data_dir", (None,))[0]
                or str(default_data_dir()))
    path: Path | None
    if config_file is not None:
        path = Path(config_file)
    elif environ.get(ENV_PREFIX + "CONFIG"):
        path = Path(environ[ENV_PREFIX + "CONFIG"])
    else:
        candidate = Path(data_dir) / CONFIG_FILE_NAME
        path = candidate if candidate.exists() else None

    if path is not None:
        for dotted, raw in _read_file(path).items():
            values[dotted] = _checked(_BY_DOTTED[dotted], raw, False, str(path))
            sources[dotted] = ConfigSource("file", str(path))
    for dotted, (value, name) in env_values.items():
        values[dotted] = value
        sources[dotted] = ConfigSource("env", name)
    for dotted, value in flag_values.items():
        values[dotted] = value
        sources[dotted] = ConfigSource("flag")
    if not values["node.data_dir"]:
        values["node.data_dir"] = data_dir
    if not values["node.name"]:
        values["node.name"] = socket.gethostname()
    if values["api.token_file"] and not values["api.token"]:
        values["api.token"] = _read_token_file(Path(values["api.token_file"]))
        sources["api.token"] = ConfigSource("file", values["api.token_file"])
    _check_combinations(values)
    return Config(values, sources, path, (flags, environ))


def _read_token_file(path: Path) -> str:
    """The API token from ``api.token_file``, refusing a file others may read or another owns."""
    try:
        st = path.stat()
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"api.token_file: cannot read {path}: {reason}",
                          key="api.token_file") from None
    if st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise ConfigError(f"api.token_file: {path} must be owned by this user and not accessible "
                          f"by others (mode {st.st_mode & 0o777:04o}); run `chmod 600 {path}`",
                          key="api.token_file")
    if not text:
        raise ConfigError(f"api.token_file: {path} is empty", key="api.token_file")
    return text


def _check_combinations(values: Mapping[str, Any]) -> None:
    host, _ = parse_hostport(values["api.listen"])
    if not _is_loopback(host) and not values["api.token"]:
        raise ConfigError(
            f"api.listen: binding the HTTP API to {host} (not loopback) requires api.token; "
            "set one, or keep the API on 127.0.0.1",
            key="api.listen",
        )
    unknown = set(values["health.critical"]) - {"disk", "memory", "p2p", "storage"}
    if unknown:
        raise ConfigError(
            f"health.critical: unknown check {sorted(unknown)[0]!r}; "
            "expected disk, memory, p2p or storage",
            key="health.critical",
        )


def systemd_environment(
    environ: Mapping[str, str] | None = None,
) -> tuple[str | None, float | None]:
    """(NOTIFY_SOCKET, watchdog interval in seconds) that systemd passed us, if any."""
    environ = os.environ if environ is None else environ
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID", "")
    watchdog = int(usec) / 1e6 if usec.isdigit() and (not pid or pid == str(os.getpid())) else None
    return environ.get("NOTIFY_SOCKET") or None, watchdog


def config_template(keys: Iterable[Key] = SCHEMA) -> str:
    """A commented config file listing every key with its default."""
    lines = ["# bzzz-edge configuration. Every key is optional; uncomment to change a default.",
             "# Any key can be overridden by BZZZ_EDGE_<SECTION>_<KEY> or a command-line flag.", ""]
    section = None
    for key in keys:
        if key.section != section:
            if section is not None:
                lines.append("")
            lines.append(f"[{key.section}]")
            section = key.section
        lines.append(f"# {key.help}")
        lines.append(f"# {key.name} = {_format_value(key.default)}")
    return "\n".join(lines) + "\n"
