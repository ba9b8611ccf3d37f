"""Choose the compiled hot paths or their pure-Python twins, in one place. No I/O.

Each hot path has a Cython module ``bzzz_edge._compiled.<name>`` (built from ``_native/`` when a
compiler was there at install time) and a pure-Python twin with the same public names.
``BZZZ_EDGE_PURE=1`` forces the twins for the whole process; it is read here rather than in
config.py because the choice has to be made at import time, before any config is loaded. Any
value but "", "0" and "1" makes importing this module (and so every module with a hot path)
raise ConfigError: "yes" or "true" silently meaning "compiled" would be worse than no answer.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

from .errors import ConfigError

__all__ = [
    "ENV_VAR",
    "FORCED_PURE",
    "PURE_MODULES",
    "compiled_module",
    "implementations",
    "load",
    "pure_module",
]

ENV_VAR = "BZZZ_EDGE_PURE"


def _forced_pure(value: str) -> bool:
    """What ``BZZZ_EDGE_PURE=value`` asks for.

    Raises:
        ConfigError: any value but "", "0" or "1".
    """
    if value not in ("", "0", "1"):
        raise ConfigError(f"{ENV_VAR}={value!r}: expected 1 (use the pure-Python fallbacks), "
                          f"0 or empty (use the compiled modules where they were built)",
                          key=ENV_VAR)
    return value == "1"


FORCED_PURE = _forced_pure(os.environ.get(ENV_VAR, ""))

# hot path name -> the pure-Python twin's module
PURE_MODULES = {
    "ucxl": "bzzz_edge.ucxl._pure",
    "dedup": "bzzz_edge.wire._dedup_pure",
    "lz4": "bzzz_edge.wire._lz4_pure",
}

_chosen: dict[str, str] = {}


def compiled_module(name: str) -> ModuleType | None:
    """The compiled module for ``name``, or None when it was not built."""
    try:
        return importlib.import_module(f"bzzz_edge._compiled.{name}")
    except ImportError:
        return None


def pure_module(name: str) -> ModuleType:
    """The pure-Python twin for ``name``."""
    return importlib.import_module(PURE_MODULES[name])


def load(name: str) -> ModuleType:
    """The implementation of hot path ``name`` this process uses."""
    module = None if FORCED_PURE else compiled_module(name)
    if module is None:
        module = pure_module(name)
        _chosen[name] = "pure"
    else:
        _chosen[name] = "compiled"
    return module


def implementations() -> dict[str, str]:
    """``{hot path: "compiled" | "pure"}`` for every hot path, as this process would load them."""
    for name in PURE_MODULES:
        if name not in _chosen:
            load(name)
    return dict(_chosen)
