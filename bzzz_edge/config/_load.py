"""Loading the configuration: defaults < TOML file < BZZZ_EDGE_* environment < command-line
flags, each value checked against the schema and remembering where it came from (for
``bzzz-edge config show``); then the checks that span keys. Does I/O: reads the config file,
the API token file and the environment.

Unknown keys and bad values raise ``ConfigError`` naming the key, the value and what was
expected.
"""

from __future__ import annotations

import os
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..settings import Settings
from ._render import format_value
from ._schema import (
    ENV_PREFIX,
    KEYS_BY_DOTTED,
    KEYS_BY_ENV,
    SCHEMA,
    Key,
    is_loopback,
    parse_hostport,
)

__all__ = [
    "CONFIG_FILE_NAME",
    "Config",
    "ConfigSource",
    "default_data_dir",
    "load_config",
    "systemd_environment",
]

# Environment variables with the prefix that are not configuration keys.
_NON_KEY_ENV = {"PURE", "REQUIRE_NATIVE", "CONFIG", "NATIVE_MODULES"}
CONFIG_FILE_NAME = "config.toml"


def default_data_dir() -> Path:
    """Where a node keeps its identity, config and store unless told otherwise."""
    if os.geteuid() == 0:
        return Path("/var/lib/bzzz-edge")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "bzzz-edge"


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

    def with_reloadable(self, new: Config) -> tuple[Config, list[Key]]:
        """This configuration with the keys SIGHUP may change taken from ``new``, and every
        key whose value differs (reloadable or not, for the caller to report)."""
        changed = [k for k in SCHEMA if new[k.dotted] != self[k.dotted]]
        applied = {k.dotted: new[k.dotted] for k in changed if k.reloadable}
        updated = Config({**self.values, **applied},
                         {**self.sources, **{k: new.sources[k] for k in applied}},
                         self.file, self._inputs)
        return updated, changed

    def describe(self) -> list[tuple[str, str, str]]:
        """(key, shown value, source) rows; secrets are masked."""
        rows = []
        for key in SCHEMA:
            value = self.values[key.dotted]
            shown = "********" if key.secret and value else format_value(value)
            rows.append((key.dotted, shown, str(self.sources[key.dotted])))
        return rows


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
            if dotted not in KEYS_BY_DOTTED:
                raise ConfigError(f"{path}: unknown key {dotted}{_suggest(dotted)}", key=dotted)
            flat[dotted] = value
    return flat


def _suggest(dotted: str) -> str:
    import difflib

    close = difflib.get_close_matches(dotted, list(KEYS_BY_DOTTED), n=1)
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
        key = KEYS_BY_ENV.get(name)
        if key is None:
            raise ConfigError(f"environment: unknown variable {name}", key=name)
        env_values[key.dotted] = (_checked(key, raw, True, f"environment {name}"), name)
    flag_values = {}
    for dotted, raw in flags.items():
        key = KEYS_BY_DOTTED.get(dotted)
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
            values[dotted] = _checked(KEYS_BY_DOTTED[dotted], raw, False, str(path))
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
    if not is_loopback(host) and not values["api.token"]:
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
