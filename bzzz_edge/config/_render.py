"""The configuration as text: values as they are written in TOML, and the commented template
``bzzz-edge init`` writes. No I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._schema import SCHEMA, Key

__all__ = ["config_template", "format_value"]


def format_value(value: Any) -> str:
    """A value as it is written in TOML (and shown by ``config show``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


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
        lines.append(f"# {key.name} = {format_value(key.default)}")
    return "\n".join(lines) + "\n"
