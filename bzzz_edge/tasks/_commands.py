"""Task commands: their versioned msgpack form in the decision log. No I/O.

Every command is ``["bzzz.task", 1, OP, NODE, AT, BODY]``: the marker (other components' log
entries do not start with it and are left alone), the format version, the operation, the
proposing node's 32-byte ID, the proposer's wall-clock time (seconds; deadlines are measured
from it) and a map of the operation's fields:

==========  =================================================================================
announce    ``id``, ``title``, ``description``, ``role``, ``capabilities``, ``priority``,
            ``scopes``, ``deadline`` (seconds or nil), ``address``
claim       ``id``, ``profile`` (``roles``: name to patterns, ``capabilities``, ``capacity``)
progress    ``id``, ``text``
complete    ``id``, ``result`` (a UCXL address or nil)
fail        ``id``, ``text``
release     ``id``, ``owner`` (the owner the release was decided against), ``why``
            (``given_up`` by the owner; ``owner_dead`` or ``deadline`` by the coordinator)
==========  =================================================================================

``decode`` refuses anything else with ``Refused(Reason.MALFORMED)`` and over-long fields with
``Refused(Reason.TOO_LONG)``; it never raises anything else for any input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

import msgpack

from ._model import LIMITS, Limits, Reason
from ._roles import Profile

__all__ = ["MARKER", "OPS", "RELEASE_WHY", "VERSION", "Command", "Refused", "decode", "encode",
           "is_ours"]

MARKER: Final = "bzzz.task"
VERSION: Final = 1
OPS: Final = ("announce", "claim", "progress", "complete", "fail", "release")
RELEASE_WHY: Final = ("given_up", "owner_dead", "deadline")
_PREFIX: Final = msgpack.packb(MARKER)


class Refused(Exception):
    """A command the state machine refuses: ``reason`` and a text for people."""

    def __init__(self, reason: Reason, text: str) -> None:
        super().__init__(text)
        self.reason, self.text = reason, text


@dataclass(frozen=True, slots=True)
class Command:
    op: str
    node: bytes
    at: float
    body: dict[str, Any]

    @property
    def task_id(self) -> str:
        value: str = self.body["id"]
        return value

    def profile(self) -> Profile:
        value: Profile = self.body["profile"]
        return value


def encode(op: str, node: bytes, at: float, body: dict[str, Any]) -> bytes:
    """The command's bytes for ``ConsensusService.propose`` (a ``Profile`` is encoded too)."""
    wire = {k: (v.encode() if isinstance(v, Profile) else v) for k, v in body.items()}
    packed: bytes = msgpack.packb([MARKER, VERSION, op, node, at, wire], use_bin_type=True)
    return packed


def is_ours(data: bytes) -> bool:
    """Whether a log entry is a task command at all (by its marker)."""
    return len(data) > len(_PREFIX) and data[1:1 + len(_PREFIX)] == _PREFIX


def peek(data: bytes) -> tuple[str, bytes | None, str]:
    """(op, node, task ID) of a command ``decode`` refused, as far as they can be read (so a
    refusal still reaches the proposer's waiter); ("", None, "") when they cannot."""
    try:
        raw = msgpack.unpackb(data, raw=False, strict_map_key=False, max_bin_len=1 << 20,
                              max_str_len=1 << 20, max_array_len=4096, max_map_len=4096)
    except (ValueError, TypeError, msgpack.UnpackException):
        return "", None, ""
    if not isinstance(raw, list) or len(raw) != 6:
        return "", None, ""
    op = raw[2] if raw[2] in OPS else ""
    node = raw[3] if isinstance(raw[3], bytes) and len(raw[3]) == 32 else None
    task_id = raw[5].get("id") if isinstance(raw[5], dict) else None
    return op, node, task_id if isinstance(task_id, str) else ""


def decode(data: bytes, limits: Limits = LIMITS) -> Command:
    """A checked command.

    Raises:
        Refused: MALFORMED (not a command of this shape and version) or TOO_LONG.
    """
    try:
        raw = msgpack.unpackb(data, raw=False, strict_map_key=False, max_bin_len=1 << 20,
                              max_str_len=1 << 20, max_array_len=4096, max_map_len=4096)
    except (ValueError, TypeError, msgpack.UnpackException):
        raise Refused(Reason.MALFORMED, "not msgpack") from None
    if not isinstance(raw, list) or len(raw) != 6 or raw[0] != MARKER:
        raise Refused(Reason.MALFORMED, "not [marker, version, op, node, at, body]")
    _, version, op, node, at, body = raw
    if version != VERSION:
        raise Refused(Reason.MALFORMED, f"unknown command version {version!r}")
    if op not in OPS:
        raise Refused(Reason.MALFORMED, f"unknown operation {op!r}")
    if not isinstance(node, bytes) or len(node) != 32:
        raise Refused(Reason.MALFORMED, "node: not a 32-byte node ID")
    if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
        raise Refused(Reason.MALFORMED, "at: not a time")
    if not isinstance(body, dict):
        raise Refused(Reason.MALFORMED, "body: not a map")
    try:
        checked = _CHECKS[op](body, limits)
    except (KeyError, TypeError) as exc:
        raise Refused(Reason.MALFORMED, f"{op}: missing or mistyped field ({exc})") from None
    return Command(op, node, float(at), checked)


def _text(body: dict[str, Any], key: str, bound: int, *, empty: bool = True) -> str:
    value = body[key]
    if not isinstance(value, str):
        raise TypeError(f"{key} is not a string")
    if len(value) > bound:
        raise Refused(Reason.TOO_LONG, f"{key}: {len(value)} characters, at most {bound}")
    if not empty and not value:
        raise TypeError(f"{key} is empty")
    return value


def _texts(body: dict[str, Any], key: str, each: int, count: int) -> tuple[str, ...]:
    value = body[key]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"{key} is not a list of strings")
    if len(value) > count:
        raise Refused(Reason.TOO_LONG, f"{key}: {len(value)} items, at most {count}")
    for item in value:
        if len(item) > each:
            raise Refused(Reason.TOO_LONG, f"{key}: an item of {len(item)} characters, at most "
                          f"{each}")
    return tuple(value)


def _announce(body: dict[str, Any], lim: Limits) -> dict[str, Any]:
    priority, deadline = body["priority"], body["deadline"]
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise TypeError("priority is not an integer")
    if abs(priority) > lim.max_priority:
        raise Refused(Reason.TOO_LONG, f"priority: at most {lim.max_priority} either way")
    if deadline is not None:
        if isinstance(deadline, bool) or not isinstance(deadline, int | float) \
                or not math.isfinite(deadline) or deadline <= 0:
            raise TypeError("deadline is not a positive number of seconds")
        if deadline > lim.max_deadline:
            raise Refused(Reason.TOO_LONG, f"deadline: at most {lim.max_deadline:.0f} s")
        deadline = float(deadline)
    return {"id": _text(body, "id", lim.id, empty=False),
            "title": _text(body, "title", lim.title, empty=False),
            "description": _text(body, "description", lim.description),
            "role": _text(body, "role", lim.role),
            "capabilities": _texts(body, "capabilities", lim.capability, lim.capabilities),
            "priority": priority,
            "scopes": _texts(body, "scopes", lim.scope, lim.scopes),
            "deadline": deadline,
            "address": _text(body, "address", lim.address, empty=False)}


def _claim(body: dict[str, Any], lim: Limits) -> dict[str, Any]:
    try:
        profile = Profile.decode(body["profile"], lim)
    except ValueError as exc:
        raise Refused(Reason.TOO_LONG, str(exc)) from None
    return {"id": _text(body, "id", lim.id, empty=False), "profile": profile}


def _progress(body: dict[str, Any], lim: Limits) -> dict[str, Any]:
    return {"id": _text(body, "id", lim.id, empty=False), "text": _text(body, "text", lim.text)}


def _complete(body: dict[str, Any], lim: Limits) -> dict[str, Any]:
    result = body["result"]
    if result is not None:
        result = _text(body, "result", lim.address, empty=False)
    return {"id": _text(body, "id", lim.id, empty=False), "result": result}


def _release(body: dict[str, Any], lim: Limits) -> dict[str, Any]:
    owner, why = body["owner"], body["why"]
    if not isinstance(owner, bytes) or len(owner) != 32:
        raise TypeError("owner is not a node ID")
    if why not in RELEASE_WHY:
        raise TypeError(f"why is not one of {', '.join(RELEASE_WHY)}")
    return {"id": _text(body, "id", lim.id, empty=False), "owner": owner, "why": why}


_CHECKS = {"announce": _announce, "claim": _claim, "progress": _progress,
           "complete": _complete, "fail": _progress, "release": _release}
