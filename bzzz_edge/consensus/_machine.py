"""The decision log's state machine: what applying committed entries builds. No I/O.

Issue 14 needs the log itself, not a particular state: ``DecisionLog`` keeps the applied
index, the number of commands and a hash chain over them (two nodes that applied different
histories disagree on the digest, which the status shows), and serialises to a snapshot of
those three. Components that build state on the log (task claims) follow the ``committed``
feed of the service.
"""

from __future__ import annotations

import hashlib

import msgpack

from bzzz_edge.consensus._messages import Entry, EntryKind
from bzzz_edge.errors import DecodeError

__all__ = ["DecisionLog"]


class DecisionLog:
    """Applied index, command count and a digest over every applied command."""

    def __init__(self) -> None:
        self.applied = 0
        self.commands = 0
        self.digest = bytes(16)

    def apply(self, entry: Entry) -> None:
        self.applied = entry.index
        if entry.kind is EntryKind.COMMAND:
            self.commands += 1
            self.digest = hashlib.blake2b(self.digest + entry.data, digest_size=16).digest()

    def snapshot(self) -> bytes:
        packed: bytes = msgpack.packb([self.applied, self.commands, self.digest],
                                      use_bin_type=True)
        return packed

    def restore(self, index: int, data: bytes) -> None:
        """Replace the state with a snapshot's.

        Raises:
            DecodeError: the snapshot is not one of ours.
        """
        try:
            applied, commands, digest = msgpack.unpackb(data)
        except (ValueError, TypeError, msgpack.UnpackException):
            raise DecodeError("decision log snapshot: not [applied, commands, digest]") from None
        if applied != index or not isinstance(commands, int) or not isinstance(digest, bytes):
            raise DecodeError("decision log snapshot: fields do not match")
        self.applied, self.commands, self.digest = applied, commands, digest
