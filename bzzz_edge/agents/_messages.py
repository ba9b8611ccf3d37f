"""The messages of the agents topic, their bounds and their checks. No I/O.

Two kinds travel on ``bzzz/agents/v1``, each a JSON object (readable with ``bzzz-edge sub``):

- ``availability``: what a node says of itself every interval and on change: its name, load
  averages, memory use, CPU count, capacity, how many tasks it holds and (the first
  ``MAX_TASK_IDS`` of) their IDs, and ``profile``, the digest of its roles and capabilities.
  The roles (with their directory-scope patterns) and capabilities themselves ride along only
  when they changed, when a node asked for them, or when a node joined.
- ``want``: "send your roles and capabilities": the node IDs a node lacks them for; each node
  named answers with an availability that carries them.

Which node a message describes is the gossip message's signed origin, never a field here. A
message over a bound, of the wrong shape or whose profile does not match its digest is
refused with a ``Refusal`` naming why (the caller counts it).
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ..errors import IdentityError, RemoteProtocolError
from ..ids import parse_node_id
from ..tasks import LIMITS as TASK_LIMITS
from ..tasks import Profile

__all__ = ["MAX_MESSAGE_BYTES", "MAX_TASK_IDS", "MAX_WANTED", "Availability", "Refusal",
           "Refused", "Want", "decode", "encode_availability", "encode_want", "profile_digest"]

VERSION: Final = 1
MAX_MESSAGE_BYTES: Final = 64 * 1024  # checked before parsing
MAX_NAME: Final = 64
MAX_TASK_IDS: Final = 64  # task IDs listed; ``held`` says how many there are
MAX_WANTED: Final = 64  # node IDs in one want
_DIGEST_LEN: Final = 16
_MAX_COUNT: Final = 10**9
_MAX_LOAD: Final = 1e6


class Refusal(enum.Enum):
    """Why a message was refused; the values name the counters."""

    MALFORMED = "malformed"  # not JSON, not an object, a field of the wrong type
    TOO_LONG = "too_long"  # the message or a field over its bound
    UNKNOWN = "unknown_type"  # a type or version this node does not know
    DIGEST = "digest_mismatch"  # roles and capabilities that are not what the digest says


class Refused(RemoteProtocolError):
    """A peer's message this node does not take (``reason``, and the text says why)."""

    def __init__(self, reason: Refusal, text: str) -> None:
        super().__init__(text)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Availability:
    """One node's availability as it said it; ``roles``/``capabilities`` None when absent."""

    name: str
    load: tuple[float, float, float]
    memory_percent: float
    memory_available: int
    cpus: int
    capacity: int
    held: int
    tasks: tuple[str, ...]
    profile: str  # the digest of its roles and capabilities
    roles: Mapping[str, tuple[str, ...]] | None = None
    capabilities: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class Want:
    """The nodes whose roles and capabilities the sender lacks."""

    nodes: tuple[bytes, ...]


def profile_digest(roles: Mapping[str, tuple[str, ...]], capabilities: frozenset[str]) -> str:
    """A short digest of roles (with patterns) and capabilities: equal profiles, equal
    digests, across restarts (nothing to remember)."""
    canonical = json.dumps([sorted((k, list(v)) for k, v in roles.items()),
                            sorted(capabilities)], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:_DIGEST_LEN]


def encode_availability(a: Availability) -> bytes:
    """The JSON of ``a`` (with roles and capabilities when it carries them)."""
    body: dict[str, Any] = {
        "type": "availability", "v": VERSION, "name": a.name[:MAX_NAME],
        "load": [round(x, 3) for x in a.load], "memory_percent": round(a.memory_percent, 1),
        "memory_available": a.memory_available, "cpus": a.cpus, "capacity": a.capacity,
        "held": a.held, "tasks": list(a.tasks[:MAX_TASK_IDS]), "profile": a.profile}
    if a.roles is not None and a.capabilities is not None:
        body["roles"] = {name: list(p) for name, p in sorted(a.roles.items())}
        body["capabilities"] = sorted(a.capabilities)
    return json.dumps(body, separators=(",", ":")).encode()


def encode_want(nodes: tuple[str, ...]) -> bytes:
    """A want naming ``nodes`` (node IDs as ``bzzz-edge id`` prints them; the first
    ``MAX_WANTED``)."""
    return json.dumps({"type": "want", "v": VERSION, "nodes": list(nodes[:MAX_WANTED])},
                      separators=(",", ":")).encode()


def decode(data: bytes) -> Availability | Want:
    """Check and decode one message of the agents topic.

    Raises:
        Refused: over a bound, malformed, unknown, or a profile that does not match its digest.
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise Refused(Refusal.TOO_LONG, f"{len(data)} bytes, at most {MAX_MESSAGE_BYTES}")
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise Refused(Refusal.MALFORMED, "not JSON") from None
    if not isinstance(raw, dict):
        raise Refused(Refusal.MALFORMED, "not a JSON object")
    kind, version = raw.get("type"), raw.get("v")
    if version != VERSION or kind not in ("availability", "want"):
        raise Refused(Refusal.UNKNOWN, f"type {str(kind)[:32]!r} version {str(version)[:8]}")
    try:
        return _availability(raw) if kind == "availability" else _want(raw)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, _TooLong):
            raise Refused(Refusal.TOO_LONG, str(exc)) from None
        raise Refused(Refusal.MALFORMED, f"{kind}: {type(exc).__name__} {exc}"[:200]) from None


class _TooLong(ValueError):
    pass


def _int(raw: dict[str, Any], key: str, top: int = _MAX_COUNT) -> int:
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
        raise TypeError(f"{key}: a whole number from 0 to {top}")
    return value


def _float(value: Any, key: str, top: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            not math.isfinite(value) or not 0 <= value <= top:
        raise TypeError(f"{key}: a number from 0 to {top:g}")
    return float(value)


def _str(value: Any, key: str, top: int) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{key}: a string")
    if len(value) > top:
        raise _TooLong(f"{key}: {len(value)} characters, at most {top}")
    return value


def _availability(raw: dict[str, Any]) -> Availability:
    load, tasks = raw["load"], raw["tasks"]
    if not isinstance(load, list) or len(load) != 3:
        raise TypeError("load: three numbers")
    if not isinstance(tasks, list):
        raise TypeError("tasks: a list")
    if len(tasks) > MAX_TASK_IDS:
        raise _TooLong(f"tasks: {len(tasks)} IDs, at most {MAX_TASK_IDS}")
    digest = _str(raw["profile"], "profile", _DIGEST_LEN)
    capacity = _int(raw, "capacity")
    roles: Mapping[str, tuple[str, ...]] | None = None
    capabilities: frozenset[str] | None = None
    if "roles" in raw or "capabilities" in raw:
        try:
            profile = Profile.decode({"roles": raw["roles"], "capabilities": raw["capabilities"],
                                      "capacity": capacity}, TASK_LIMITS)
        except ValueError as exc:  # Profile's bounds
            raise _TooLong(str(exc)) from None
        if len(set(raw["capabilities"])) != len(raw["capabilities"]):
            raise ValueError("capabilities: repeated")
        roles, capabilities = profile.roles, profile.capabilities
        if profile_digest(roles, capabilities) != digest:
            raise Refused(Refusal.DIGEST, "roles and capabilities do not match the digest")
    return Availability(
        name=_str(raw["name"], "name", MAX_NAME),
        load=(_float(load[0], "load", _MAX_LOAD), _float(load[1], "load", _MAX_LOAD),
              _float(load[2], "load", _MAX_LOAD)),
        memory_percent=_float(raw["memory_percent"], "memory_percent", 100.0),
        memory_available=_int(raw, "memory_available", 2**62), cpus=_int(raw, "cpus", 65536),
        capacity=capacity, held=_int(raw, "held"),
        tasks=tuple(_str(t, "tasks", TASK_LIMITS.id) for t in tasks), profile=digest,
        roles=roles, capabilities=capabilities)


def _want(raw: dict[str, Any]) -> Want:
    nodes = raw["nodes"]
    if not isinstance(nodes, list):
        raise TypeError("nodes: a list")
    if len(nodes) > MAX_WANTED:
        raise _TooLong(f"nodes: {len(nodes)}, at most {MAX_WANTED}")
    try:
        return Want(tuple(parse_node_id(_str(n, "nodes", 80)) for n in nodes))
    except IdentityError as exc:  # not a node ID
        raise ValueError(f"nodes: {exc}") from None
