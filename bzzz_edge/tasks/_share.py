"""Telling a node that connects the tasks this node announced and no claim took into the log yet.

An announce is published once, over gossip (``_announced``): a node that was not connected then
(not started yet, down, on the other side of a split) would not hold the task until somebody
claimed it, so it could never claim it itself. So when a connection to a peer is set up, each
node sends that peer the announces it made itself that are still pending (RPC
``tasks.announced``), and the peer keeps them as it keeps what gossip brings: taken only from
their announcer (the connection proves who sent them), within the same bounds. Only announcers
send their own: nobody announces in another node's name, and a task travels once per connection.

Bounds (``Sharing``), in each window of ``AGAIN_AFTER`` seconds. Sending: a node sends its own
pending announces only (``_announced.PER_NODE`` tasks, ``PER_NODE_BYTES``), in requests of at
most ``BATCH_BYTES``, to a peer once, and once more if that failed (the connection closed right
after it was set up, say): a peer that fails our share on purpose does not get it again on
every reconnect. Receiving: a request is at most one frame (the transport's limit), a peer's
announces are held to the per-node bounds its gossip is held to, and a peer gets at most
``BUDGET`` announces decoded (an honest one sends ``PER_NODE`` at most, once, perhaps twice):
requests beyond it are refused before anything in them is decoded, however fast a peer
holding the key sends them. Node IDs cost such a peer nothing to make, so what is per peer is
also bounded in all: ``SENT_BYTES_ALL`` of shares sent to all peers (beyond it a peer goes
without; it hears of our tasks by gossip, or when they are claimed) and ``DECODED_ALL``
announces decoded for all (as many as ``_announced`` may hold). No I/O here: the service sends
and serves (``TaskService``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import msgpack

from ._announced import MAX_BYTES, MAX_TASKS, PER_NODE
from ._commands import MAX_ANNOUNCE

__all__ = ["AGAIN_AFTER", "BATCH_BYTES", "BUDGET", "DECODED_ALL", "KEEP_CHUNK", "MAX_PER_BATCH",
           "RPC_METHOD", "SENT_BYTES_ALL", "Budget", "Sharing", "batches", "read_batch"]

RPC_METHOD = "tasks.announced"
# Below the transport's smallest frame limit with room for the envelope; a node's pending
# announces (2 MiB at most) go in eight requests or fewer.
BATCH_BYTES = 256 * 1024
# Announces a request carries at most: a node's own pending ones (``_announced.PER_NODE``) fit
# in one; the receiver decodes each (tens of microseconds), letting its other tasks run
# between every ``KEEP_CHUNK`` of them.
MAX_PER_BATCH = 1024
KEEP_CHUNK = 64
# A peer is sent our pending announces once in this many seconds at most, however often it
# reconnects: a handshake must not buy up to 2 MiB of them again and again.
AGAIN_AFTER = 60.0
BUDGET = 2 * PER_NODE  # announces a peer may have decoded here per AGAIN_AFTER seconds
DECODED_ALL = MAX_TASKS  # ... all peers together
SENT_BYTES_ALL = MAX_BYTES  # bytes of our shares sent to all peers together per AGAIN_AFTER


def batches(commands: Iterable[bytes]) -> Iterator[bytes]:
    """``commands`` (signed announces, each at most ``MAX_ANNOUNCE`` bytes) as request bodies
    of at most ``BATCH_BYTES``, in order."""
    batch: list[bytes] = []
    size = 0
    for command in commands:
        if batch and (size + len(command) + 8 > BATCH_BYTES or len(batch) >= MAX_PER_BATCH):
            yield msgpack.packb(batch, use_bin_type=True)
            batch, size = [], 0
        batch.append(command)
        size += len(command) + 8  # msgpack's bin header, generously
    if batch:
        yield msgpack.packb(batch, use_bin_type=True)


def read_batch(body: bytes) -> list[bytes]:
    """The announces a ``tasks.announced`` request carries; what each says is checked when kept
    (``Announced.add``).

    Raises:
        ValueError: not a list of byte strings of an announce's size.
    """
    try:
        items = msgpack.unpackb(body, use_list=True, max_bin_len=MAX_ANNOUNCE,
                                max_array_len=MAX_PER_BATCH, max_str_len=0, max_map_len=0,
                                max_ext_len=0)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ValueError(f"not a list of announces ({type(exc).__name__})") from None
    if not isinstance(items, list) or not all(type(item) is bytes for item in items):
        raise ValueError("not a list of announces")
    return items


class Budget:
    """How much each peer may still spend in its current window of ``AGAIN_AFTER`` seconds
    (times from the caller's clock): announces decoded for it, or (a budget of 1) our shares
    sent to it. Holds the peers that spent within the window only."""

    def __init__(self, budget: int = BUDGET, window: float = AGAIN_AFTER) -> None:
        self.budget, self.window = budget, window
        self._spent: dict[bytes, tuple[float, int]] = {}  # peer -> (window began, announces)

    def take(self, peer: bytes, count: int, now: float) -> bool:
        """Spend ``count`` of ``peer``'s budget; False (nothing spent) when it would go over."""
        began, spent = self._spent.get(peer, (now, 0))
        if now - began >= self.window:
            began, spent = now, 0
        if spent + count > self.budget:
            return False
        if peer not in self._spent:  # a new peer: the expired go first (bounded by peers)
            self._spent = {p: w for p, w in self._spent.items() if now - w[0] < self.window}
        self._spent[peer] = (began, spent + count)
        return True

    def forget(self, peer: bytes) -> None:
        """Give ``peer`` its whole budget again (what it spent was not spent after all)."""
        self._spent.pop(peer, None)

    def give_back(self, peer: bytes, count: int) -> None:
        """Return ``count`` that ``peer`` took in its current window."""
        if peer in self._spent:
            began, spent = self._spent[peer]
            self._spent[peer] = (began, max(0, spent - count))


_ALL = b""  # the key of a budget shared by every peer


class Sharing:
    """Whether to send our share to a peer, and whether to decode a peer's, now: the bounds
    of the module docstring, per peer and in all (times from the caller's clock)."""

    def __init__(self, window: float = AGAIN_AFTER, *, decoded: int = BUDGET,
                 decoded_all: int = DECODED_ALL, sent_bytes_all: int = SENT_BYTES_ALL) -> None:
        self._sent = Budget(1, window)  # our share to each peer once a window...
        self._resent = Budget(1, window)  # ... and once more after a failed send
        self._sent_bytes = Budget(sent_bytes_all, window)
        self._decoded = Budget(decoded, window)
        self._decoded_all = Budget(decoded_all, window)

    def may_send(self, peer: bytes, now: float) -> bool:
        """Whether ``peer`` may be sent our share now (counted as sent if so): not sent it in
        this window yet. Cheap: asked before the share is gathered."""
        return self._sent.take(peer, 1, now)

    def may_send_bytes(self, peer: bytes, size: int, now: float) -> bool:
        """After ``may_send``: whether the ``size`` bytes of our share fit in what all peers
        may be sent in this window (counted if so; if not, ``peer`` may have it later)."""
        if self._sent_bytes.take(_ALL, size, now):
            return True
        self._sent.forget(peer)
        return False

    def send_failed(self, peer: bytes, now: float) -> None:
        """Our share did not reach ``peer``: its next connection gets it, once a window."""
        if self._resent.take(peer, 1, now):
            self._sent.forget(peer)

    def may_decode(self, peer: bytes, count: int, now: float) -> bool:
        """Whether to decode ``count`` announces ``peer`` shares now (counted if so)."""
        if not self._decoded.take(peer, count, now):
            return False
        if not self._decoded_all.take(_ALL, count, now):
            self._decoded.give_back(peer, count)
            return False
        return True

    @property
    def decode_limits(self) -> tuple[int, int, float]:
        """(per peer, in all, window): for error messages."""
        return self._decoded.budget, self._decoded_all.budget, self._decoded.window
