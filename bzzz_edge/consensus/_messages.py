"""Raft's records and messages, and their strict wire form. No I/O.

Every message travels as a msgpack array ``[kind, term, ...fields]``; ``decode_message`` checks
every field's type and range and the limits it is given (entries per message, bytes per
command, bytes per snapshot), and raises ``DecodeError`` naming the field, so a malformed or
oversized message from a peer is refused before the core looks at it. (A message record
passed in as is, as the simulator does without encoding, is trusted: only our own code does
that.)

Log entries are ``Entry(term, index, kind, data)``: a command (opaque bytes for the state
machine), a no-op (what a new leader appends to commit its term) or a configuration (the set
of voters and learners, which takes effect as soon as it is in a log, committed or not).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

from bzzz_edge.errors import DecodeError

__all__ = [
    "NODE_ID_LEN",
    "AppendEntries",
    "AppendResponse",
    "Configuration",
    "Entry",
    "EntryKind",
    "InstallSnapshot",
    "Limits",
    "Message",
    "RequestVote",
    "Snapshot",
    "SnapshotResponse",
    "TimeoutNow",
    "VoteResponse",
    "decode_message",
    "encode_message",
]

NODE_ID_LEN = 32
# Terms and indexes are unsigned 63-bit integers on the wire.
_MAX_INT = 2**63 - 1
# A configuration lists at most this many members (a home lab has 1 to ~20 nodes).
MAX_MEMBERS = 256


class EntryKind(enum.IntEnum):
    COMMAND = 0
    NOOP = 1
    CONFIG = 2


@dataclass(frozen=True, slots=True)
class Configuration:
    """Who votes and who only follows the log. Voters and learners are disjoint."""

    voters: frozenset[bytes]
    learners: frozenset[bytes] = frozenset()

    def __post_init__(self) -> None:
        if self.voters & self.learners:
            raise DecodeError("configuration: a node is both voter and learner")

    @property
    def members(self) -> frozenset[bytes]:
        return self.voters | self.learners

    def quorum(self) -> int:
        """Votes (or acknowledgements) that make a majority of the voters."""
        return len(self.voters) // 2 + 1

    def encode(self) -> list[list[bytes]]:
        return [sorted(self.voters), sorted(self.learners)]


EMPTY_CONFIGURATION = Configuration(frozenset())


@dataclass(frozen=True, slots=True)
class Entry:
    term: int
    index: int
    kind: EntryKind
    data: bytes = b""
    config: Configuration | None = None

    def size(self) -> int:
        """Bytes this entry counts for against message budgets (a close upper bound)."""
        members = len(self.config.members) if self.config is not None else 0
        return 24 + len(self.data) + members * (NODE_ID_LEN + 2)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The state machine at ``index`` (its bytes come from the shell) and the configuration."""

    index: int
    term: int
    config: Configuration
    data: bytes


@dataclass(frozen=True, slots=True)
class Limits:
    """What a decoder accepts; the core passes its configuration's limits."""

    max_entries: int = 1024
    max_command_bytes: int = 65536
    max_snapshot_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class RequestVote:
    """A (pre-)vote request. ``pre_vote``: a poll that changes nobody's state; ``transfer``:
    sent after ``TimeoutNow``, so voters answer although they heard from a leader lately."""

    term: int
    last_index: int
    last_term: int
    pre_vote: bool = False
    transfer: bool = False


@dataclass(frozen=True, slots=True)
class VoteResponse:
    term: int
    granted: bool
    pre_vote: bool = False


@dataclass(frozen=True, slots=True)
class AppendEntries:
    """``quiet``: a leader's commit notice (no entries): the follower answers only a refusal.
    Encoded as a seventh field only when set."""

    term: int
    prev_index: int
    prev_term: int
    commit: int
    entries: tuple[Entry, ...] = ()
    quiet: bool = False


@dataclass(frozen=True, slots=True)
class AppendResponse:
    """``index``: on success the follower's match index; on failure a hint (its last index or
    the index before the first entry of the conflicting term)."""

    term: int
    success: bool
    index: int


@dataclass(frozen=True, slots=True)
class InstallSnapshot:
    term: int
    snapshot: Snapshot


@dataclass(frozen=True, slots=True)
class SnapshotResponse:
    term: int
    index: int


@dataclass(frozen=True, slots=True)
class TimeoutNow:
    """The leader hands over: the receiver starts an election at once, without a pre-vote."""

    term: int


Message: TypeAlias = (
    RequestVote
    | VoteResponse
    | AppendEntries
    | AppendResponse
    | InstallSnapshot
    | SnapshotResponse
    | TimeoutNow
)

_KINDS: dict[type, int] = {
    RequestVote: 1,
    VoteResponse: 2,
    AppendEntries: 3,
    AppendResponse: 4,
    InstallSnapshot: 5,
    SnapshotResponse: 6,
    TimeoutNow: 7,
}


# --- encoding -------------------------------------------------------------------------------


def _encode_entry(entry: Entry) -> list[object]:
    if entry.kind is EntryKind.CONFIG:
        assert entry.config is not None
        return [entry.term, entry.index, int(entry.kind), entry.config.encode()]
    return [entry.term, entry.index, int(entry.kind), entry.data]


def encode_message(message: Message) -> list[object]:
    """The msgpack-ready array for ``message``."""
    kind = _KINDS[type(message)]
    if isinstance(message, RequestVote):
        return [kind, message.term, message.last_index, message.last_term, message.pre_vote,
                message.transfer]
    if isinstance(message, VoteResponse):
        return [kind, message.term, message.granted, message.pre_vote]
    if isinstance(message, AppendEntries):
        fields = [kind, message.term, message.prev_index, message.prev_term, message.commit,
                  [_encode_entry(e) for e in message.entries]]
        if message.quiet:
            fields.append(True)
        return fields
    if isinstance(message, AppendResponse):
        return [kind, message.term, message.success, message.index]
    if isinstance(message, InstallSnapshot):
        snap = message.snapshot
        return [kind, message.term, snap.index, snap.term, snap.config.encode(), snap.data]
    if isinstance(message, SnapshotResponse):
        return [kind, message.term, message.index]
    return [kind, message.term]


# --- decoding -------------------------------------------------------------------------------


def _fail(path: str, wanted: str, value: object) -> DecodeError:
    shown = type(value).__name__ if not isinstance(value, int | bool) else repr(value)
    return DecodeError(f"raft message {path}: expected {wanted}, got {shown}")


def _int(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_INT:
        raise _fail(path, "an integer in [0, 2**63)", value)
    return value


def _bool(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(path, "a boolean", value)
    return value


def _bytes(value: object, path: str, limit: int) -> bytes:
    if not isinstance(value, bytes) or len(value) > limit:
        raise _fail(path, f"bytes of at most {limit}", value)
    return value


def _array(value: object, path: str, limit: int) -> Sequence[object]:
    if not isinstance(value, list | tuple) or len(value) > limit:
        raise _fail(path, f"an array of at most {limit} items", value)
    return value


def _node_set(value: object, path: str) -> frozenset[bytes]:
    items = _array(value, path, MAX_MEMBERS)
    nodes = set()
    for i, item in enumerate(items):
        if not isinstance(item, bytes) or len(item) != NODE_ID_LEN:
            raise _fail(f"{path}[{i}]", f"a node ID of {NODE_ID_LEN} bytes", item)
        nodes.add(item)
    return frozenset(nodes)


def decode_configuration(value: object, path: str = "config") -> Configuration:
    parts = _array(value, path, 2)
    if len(parts) != 2:
        raise _fail(path, "[voters, learners]", value)
    return Configuration(_node_set(parts[0], f"{path}.voters"),
                         _node_set(parts[1], f"{path}.learners"))


def _decode_entry(value: object, path: str, limits: Limits) -> Entry:
    fields = _array(value, path, 4)
    if len(fields) != 4:
        raise _fail(path, "[term, index, kind, data]", value)
    term, index = _int(fields[0], f"{path}.term"), _int(fields[1], f"{path}.index")
    raw_kind = _int(fields[2], f"{path}.kind")
    if raw_kind not in EntryKind._value2member_map_:
        raise _fail(f"{path}.kind", "0, 1 or 2", raw_kind)
    kind = EntryKind(raw_kind)
    if kind is EntryKind.CONFIG:
        return Entry(term, index, kind, b"", decode_configuration(fields[3], f"{path}.data"))
    return Entry(term, index, kind, _bytes(fields[3], f"{path}.data", limits.max_command_bytes))


def _decode_entries(value: object, prev_index: int, limits: Limits) -> tuple[Entry, ...]:
    items = _array(value, "entries", limits.max_entries)
    entries = tuple(_decode_entry(item, f"entries[{i}]", limits) for i, item in enumerate(items))
    for offset, entry in enumerate(entries):
        if entry.index != prev_index + 1 + offset:
            raise DecodeError(f"raft message entries[{offset}].index: not consecutive")
    return entries


def decode_message(value: object, limits: Limits) -> Message:
    """Decode and check a msgpack-decoded message.

    Raises:
        DecodeError: the value is not a well-formed message within ``limits``.
    """
    if isinstance(value, tuple(_KINDS)):
        return value  # type: ignore[return-value]
    fields = _array(value, "message", 7)
    if len(fields) < 2:
        raise _fail("message", "[kind, term, ...]", value)
    kind, term = _int(fields[0], "kind"), _int(fields[1], "term")
    expected = {1: 6, 2: 4, 3: 6, 4: 4, 5: 6, 6: 3, 7: 2}.get(kind)
    if expected is None:
        raise _fail("kind", "1 to 7", kind)
    if len(fields) != expected and not (kind == 3 and len(fields) == 7):
        raise _fail("message", f"{expected} fields for kind {kind}", len(fields))
    f = fields
    if kind == 1:
        return RequestVote(term, _int(f[2], "last_index"), _int(f[3], "last_term"),
                           _bool(f[4], "pre_vote"), _bool(f[5], "transfer"))
    if kind == 2:
        return VoteResponse(term, _bool(f[2], "granted"), _bool(f[3], "pre_vote"))
    if kind == 3:
        prev_index = _int(f[2], "prev_index")
        quiet = len(f) == 7 and _bool(f[6], "quiet")
        entries = _decode_entries(f[5], prev_index, limits)
        if quiet and entries:
            raise _fail("quiet", "no entries in a commit notice", len(entries))
        return AppendEntries(term, prev_index, _int(f[3], "prev_term"), _int(f[4], "commit"),
                             entries, quiet)
    if kind == 4:
        return AppendResponse(term, _bool(f[2], "success"), _int(f[3], "index"))
    if kind == 5:
        snap = Snapshot(_int(f[2], "snapshot.index"), _int(f[3], "snapshot.term"),
                        decode_configuration(f[4], "snapshot.config"),
                        _bytes(f[5], "snapshot.data", limits.max_snapshot_bytes))
        return InstallSnapshot(term, snap)
    if kind == 6:
        return SnapshotResponse(term, _int(f[2], "index"))
    return TimeoutNow(term)
