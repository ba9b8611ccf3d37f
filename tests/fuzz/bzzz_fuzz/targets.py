"""Every fuzz target, by name, and ``all``: one target that routes each input to one of them.

``all`` lets a single coverage-guided process (libFuzzer starts once per process) spread over
every decoder: the first byte picks the target, the rest is that target's input.
"""

from __future__ import annotations

import functools

from . import codecs, http, services, wire
from .engine import Target

__all__ = ["TARGETS"]

_EACH: dict[str, Target] = {t.name: t for t in (*wire.TARGETS, *codecs.TARGETS, *http.TARGETS,
                                                 *services.TARGETS)}
_ORDER = sorted(_EACH)


def _all(data: bytes) -> None:
    if data:
        _EACH[_ORDER[data[0] % len(_ORDER)]].run(data[1:])


@functools.cache
def _all_seeds() -> list[bytes]:
    return [bytes([i]) + seed for i, name in enumerate(_ORDER) for seed in _EACH[name].seeds()]


TARGETS: dict[str, Target] = {**_EACH, "all": Target("all", _all, _all_seeds)}
