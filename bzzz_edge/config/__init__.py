"""Typed configuration: defaults < TOML file < BZZZ_EDGE_* environment < command-line flags.

Does I/O: the only package that reads configuration files and environment variables. Every key
is declared once in ``SCHEMA`` (``_schema.py``: its type, default, validation and whether SIGHUP
may change it at run time); ``_load.py`` layers the sources and checks the result, raising
``ConfigError`` naming the key, the value and what was expected; ``_render.py`` writes values
and the commented template. Each effective value remembers where it came from, for
``bzzz-edge config show``.
"""

from ._load import (
    CONFIG_FILE_NAME,
    Config,
    ConfigSource,
    default_data_dir,
    load_config,
    systemd_environment,
)
from ._render import config_template
from ._schema import ENV_PREFIX, SCHEMA, SCHEMA_DEFAULTS, Key, parse_hostport

__all__ = [
    "CONFIG_FILE_NAME",
    "ENV_PREFIX",
    "SCHEMA",
    "SCHEMA_DEFAULTS",
    "Config",
    "ConfigSource",
    "Key",
    "config_template",
    "default_data_dir",
    "load_config",
    "parse_hostport",
    "systemd_environment",
]
