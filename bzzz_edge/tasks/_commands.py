"""Task commands: their signed, versioned msgpack form in the decision log. No I/O.

Every command is ``["bzzz.task", 2, SIGNED, KEY, SIG]``: the marker (other components' log
entries do not start with it and are left alone), the format version, the signed bytes, the
signer's raw 32-byte Ed25519 public key and its 64-byte signature. ``SIGNED`` is the msgpack
``[OP, NODE, AT, SEQ, BODY]``: the operation, the proposing node's 32-byte ID (the SHA-256 of
``KEY``, ``identity.node_id_from_public_key``), the proposer's wall-clock time (seconds;
deadlines are measured from it), the proposer's sequence number (strictly increasing on each
node; it orders an owner's commands on its task, so a replay is refused) and a map of the
operation's fields:

==========  =================================================================================
announce    ``id``, ``title``, ``description``, ``role``, ``capabilities``, ``priority``,
            ``scopes``, ``deadline`` (seconds or nil), ``address``
claim       ``id``, ``profile`` (``roles``: name to patterns, ``capabilities``, ``capacity``),
            ``gen`` (how many claims of the task the claimant saw decided: the claim is for
            the task as it is after them), and optionally ``announce``: the task's signed
            announce command (at most ``MAX_ANNOUNCE`` bytes), for a task announced over
            gossip and not in the log yet (``_announced``): the claim brings it in
progress    ``id``, ``text``
complete    ``id``, ``result`` (a UCXL address or nil)
fail        ``id``, ``text``
release     ``id``, ``owner`` (the owner the release was decided against), ``gen`` (the claim
            it was decided against, counted as in ``claim``), ``why`` (``given_up`` by the
            owner; ``owner_dead`` or ``deadline`` by the coordinator)
expire      ``before``: the coordinator drops every finished task whose last time is before
            it (``agent.finished_retention`` ago on its clock)
==========  =================================================================================

The signature covers ``DOMAIN``, the network's ID (length-prefixed) and ``SIGNED``, so a
command verifies only as a task command of this network: not in another network, and no
signature made for another protocol verifies here. ``sign`` makes a command, ``decode``
checks one: it refuses anything else with ``Refused(Reason.MALFORMED)``, a command whose key
does not hash to its node or whose signature does not verify with ``Refused(Reason.FORGED)``
(at most one verification per command: ``check_signature``), over-long fields with
``Refused(Reason.TOO_LONG)``; it never raises anything else for any input.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import msgpack

from .. import signatures
from ._model import LIMITS, Limits, Reason
from ._roles import Profile

__all__ = ["DOMAIN", "MARKER", "MAX_ANNOUNCE", "OPS", "RELEASE_WHY", "VERSION", "Command",
           "Parts", "Refused", "Signer", "check_signature", "decode", "is_ours", "sign",
           "signed_bytes", "split"]

MARKER: Final = "bzzz.task"
VERSION: Final = 2
OPS: Final = ("announce", "claim", "progress", "complete", "fail", "release", "expire")
RELEASE_WHY: Final = ("given_up", "owner_dead", "deadline")
#: What every signature of a task command starts with (domain separation).
DOMAIN: Final = b"bzzz-edge task command v2\x00"
_PREFIX: Final = msgpack.packb(MARKER)
_MAX_SIGNED: Final = 1 << 20
#: The largest announce command (its fields at their bounds take about 30 KiB).
MAX_ANNOUNCE: Final = 64 * 1024
_UNPACK: Final = {"raw": False, "strict_map_key": False, "max_bin_len": _MAX_SIGNED,
                  "max_str_len": _MAX_SIGNED, "max_array_len": 4096, "max_map_len": 4096}


class Refused(Exception):
    """A command the state machine refuses: ``reason`` and a text for people."""

    def __init__(self, reason: Reason, text: str) -> None:
        super().__init__(text)
        self.reason, self.text = reason, text


class Signer(Protocol):
    """What signs commands: ``identity.Identity`` (its Ed25519 key and node ID)."""

    @property
    def node_id(self) -> bytes: ...

    @property
    def public_key_bytes(self) -> bytes: ...

    @property
    def private_key(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class Command:
    op: str
    node: bytes
    at: float
    body: dict[str, Any]
    seq: int = 0
    #: (signed bytes, key, signature) for ``verify``; empty once verified or when made here.
    proof: tuple[bytes, bytes, bytes] | tuple[()] = field(default=(), compare=False,
                                                         repr=False)

    @property
    def task_id(self) -> str:
        value: str = self.body.get("id", "")
        return value

    def profile(self) -> Profile:
        value: Profile = self.body["profile"]
        return value


def signed_bytes(network_id: bytes, signed: bytes) -> bytes:
    """What a command's signature covers."""
    return DOMAIN + bytes([len(network_id)]) + network_id + signed


def sign(signer: Signer, network_id: bytes, op: str, at: float, body: dict[str, Any], *,
         seq: int = 0) -> bytes:
    """The signed command's bytes for ``ConsensusService.propose`` (a ``Profile`` in ``body``
    is encoded too); ``signer.node_id`` is the command's node."""
    wire = {k: (v.encode() if isinstance(v, Profile) else v) for k, v in body.items()}
    signed: bytes = msgpack.packb([op, signer.node_id, at, seq, wire], use_bin_type=True)
    signature = signer.private_key.sign(signed_bytes(network_id, signed))
    packed: bytes = msgpack.packb([MARKER, VERSION, signed, signer.public_key_bytes,
                                   signature], use_bin_type=True)
    return packed


def is_ours(data: bytes) -> bool:
    """Whether a log entry is a task command at all (by its marker)."""
    return len(data) > len(_PREFIX) and data[1:1 + len(_PREFIX)] == _PREFIX


def _unpack(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, **_UNPACK)
    except (ValueError, TypeError, msgpack.UnpackException):
        return None


Parts = tuple[list[Any], bytes, bytes, bytes]


def split(data: bytes, raw: Any = None) -> Parts | None:
    """(the signed list ``[op, node, at, seq, body]``, the signed bytes, key, signature) of a
    v2 command (``raw``: ``data`` unpacked already), or None; nothing in them is checked yet
    (``decode`` does)."""
    if raw is None:
        raw = _unpack(data)
    if not isinstance(raw, list) or len(raw) != 5 or raw[0] != MARKER or raw[1] != VERSION:
        return None
    _, _, signed, key, sig = raw
    if not isinstance(signed, bytes) or not isinstance(key, bytes) or not isinstance(sig, bytes):
        return None
    inner = _unpack(signed)
    if not isinstance(inner, list) or len(inner) != 5:
        return None
    return inner, signed, key, sig


def peek(data: bytes) -> tuple[str, bytes | None, str, int]:
    """(op, node, task ID, seq) of a command ``decode`` refused, as far as they can be read
    (so a refusal still reaches the proposer's waiter); ("", None, "", 0) when they cannot."""
    parts = split(data)
    if parts is None:
        return "", None, "", 0
    op, node, _, seq, body = parts[0]
    op = op if op in OPS else ""
    node = node if isinstance(node, bytes) and len(node) == 32 else None
    task_id = body.get("id") if isinstance(body, dict) else None
    seq = seq if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0 else 0
    return op, node, task_id if isinstance(task_id, str) else "", seq


def decode(data: bytes, limits: Limits = LIMITS, network_id: bytes = b"", *,
           verify: bool = True, parts: Parts | None = None) -> Command:
    """A checked command, signed by its node for the network ``network_id`` (``parts``: what
    ``split`` made of ``data`` already).

    With ``verify`` False the signature is left for ``verify`` to check (the state machine
    checks it only for a command its rules would not refuse anyway); the key is always
    checked to be the node's.

    Raises:
        Refused: MALFORMED (not a command of this shape and version), FORGED (the key does
            not hash to the node, or the signature does not verify) or TOO_LONG.
    """
    if parts is None:
        raw = _unpack(data)
        if not isinstance(raw, list) or len(raw) != 5 or raw[0] != MARKER:
            raise Refused(Reason.MALFORMED, "not [marker, version, signed, key, signature]")
        if raw[1] != VERSION:
            # Version 1 commands were not signed: nothing says who made them.
            raise Refused(Reason.MALFORMED, f"unknown command version {raw[1]!r}")
        parts = split(data, raw)
    if parts is None:
        raise Refused(Reason.MALFORMED, "signed part: not [op, node, at, seq, body]")
    (op, node, at, seq, body), signed, key, sig = parts
    if op not in OPS:
        raise Refused(Reason.MALFORMED, f"unknown operation {op!r}")
    if not isinstance(node, bytes) or len(node) != 32:
        raise Refused(Reason.MALFORMED, "node: not a 32-byte node ID")
    if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
        raise Refused(Reason.MALFORMED, "at: not a time")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < 1 << 63:
        raise Refused(Reason.MALFORMED, "seq: not a sequence number")
    if not isinstance(body, dict):
        raise Refused(Reason.MALFORMED, "body: not a map")
    if len(key) != 32 or len(sig) != 64:
        raise Refused(Reason.FORGED, "not a 32-byte Ed25519 key and a 64-byte signature")
    if hashlib.sha256(key).digest() != node:
        raise Refused(Reason.FORGED, "the key is not the node's")
    try:
        checked = _CHECKS[op](body, limits)
    except (KeyError, TypeError) as exc:
        raise Refused(Reason.MALFORMED, f"{op}: missing or mistyped field ({exc})") from None
    command = Command(op, node, float(at), checked, seq, (signed, key, sig))
    if verify:
        check_signature(command, network_id)
    return command


def check_signature(command: Command, network_id: bytes) -> None:
    """Verify a decoded command's signature (once: ``decode`` keeps what it needs).

    Raises:
        Refused: FORGED, the signature does not verify for ``network_id``.
    """
    if not command.proof:
        return
    signed, key, sig = command.proof
    if not signatures.verify(key, sig, signed_bytes(network_id, signed)):
        raise Refused(Reason.FORGED, "the signature does not verify")


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


def _gen(body: dict[str, Any]) -> int:
    gen = body["gen"]
    if isinstance(gen, bool) or not isinstance(gen, int) or gen < 0:
        raise TypeError("gen is not a count")
    return gen


def _claim(body: dict[str, Any], lim: Limits) -> dict[str, Any]:
    try:
        profile = Profile.decode(body["profile"], lim)
    except ValueError as exc:
        raise Refused(Reason.TOO_LONG, str(exc)) from None
    checked = {"id": _text(body, "id", lim.id, empty=False), "profile": profile,
               "gen": _gen(body)}
    announce = body.get("announce")
    if announce is not None:
        if not isinstance(announce, bytes):
            raise TypeError("announce is not bytes")
        if len(announce) > MAX_ANNOUNCE:
            raise Refused(Reason.TOO_LONG, f"announce: {len(announce)} bytes, at most "
                          f"{MAX_ANNOUNCE}")
        checked["announce"] = announce
    return checked


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
    return {"id": _text(body, "id", lim.id, empty=False), "owner": owner, "why": why,
            "gen": _gen(body)}


def _expire(body: dict[str, Any], lim: Limits) -> dict[str, Any]:
    before = body["before"]
    if isinstance(before, bool) or not isinstance(before, int | float) \
            or not math.isfinite(before):
        raise TypeError("before is not a time")
    return {"before": float(before)}


_CHECKS = {"announce": _announce, "claim": _claim, "progress": _progress,
           "complete": _complete, "fail": _progress, "release": _release, "expire": _expire}
