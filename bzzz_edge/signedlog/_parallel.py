"""Checking many entry signatures on every core: what makes `log verify` of a long log fast.
Does I/O (threads).

An Ed25519 verification is nearly all of what checking an entry costs (about 105 us here,
against some 15 us for the decode, the hash chain and the Merkle nodes), and ``cryptography``
releases the GIL while it verifies (from version 50: pyca/cryptography#15164; before it,
threads ran one at a time and we paid for worker processes, pickling every entry twice). So
``SignatureChecker`` hands chunks of ``CHUNK`` ``(index, encoded entry)`` pairs to a pool of
threads as the chain is walked: the signatures are checked on every core while the walking
thread goes on with the chain. No fork, so it is safe beside trio and any other thread (the
node's ``log verify`` endpoint uses it too). ``first_bad`` waits for them all and names the
lowest index whose signature fails. Memory: at most ``2 * workers`` chunks are in flight; the
walk waits for the oldest beyond that.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..errors import DecodeError, SignatureError
from ._codec import check_signature, entry_signature

__all__ = ["CHUNK", "PARALLEL_MIN", "SWITCH_INTERVAL", "SignatureChecker", "default_workers"]

CHUNK = 512
PARALLEL_MIN = 2 * CHUNK  # below this, one thread checks them as it walks
SWITCH_INTERVAL = 0.0005  # seconds: sys.setswitchinterval while checking (see verify_stored)


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else os.cpu_count() or 1)


def _check_chunk(key: Ed25519PublicKey, chunk: list[tuple[int, bytes]]) -> tuple[int, str] | None:
    for index, encoded in chunk:
        try:
            body, signature = entry_signature(encoded)
            check_signature(key, body, signature)
        except (DecodeError, SignatureError) as exc:
            return index, str(exc)
    return None


class SignatureChecker:
    """Checks entry signatures in worker threads (see the module docstring)."""

    def __init__(self, public_key: bytes, workers: int) -> None:
        self._key = Ed25519PublicKey.from_public_bytes(public_key)
        self._workers = workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="log-verify")
        self._chunk: list[tuple[int, bytes]] = []
        self._running: deque[Future[tuple[int, str] | None]] = deque()
        self._bad: list[tuple[int, str]] = []

    def __call__(self, index: int, encoded: bytes) -> None:
        self._chunk.append((index, encoded))
        if len(self._chunk) >= CHUNK:
            self._submit()

    def _submit(self) -> None:
        if self._chunk:
            self._running.append(self._pool.submit(_check_chunk, self._key, self._chunk))
            self._chunk = []
        while len(self._running) > 2 * self._workers:
            self._collect(self._running.popleft())

    def _collect(self, future: Future[tuple[int, str] | None]) -> None:
        result = future.result()
        if result is not None:
            self._bad.append(result)

    def first_bad(self) -> tuple[int, str] | None:
        """Wait for every check; the lowest failing ``(index, reason)``, or None."""
        self._submit()
        while self._running:
            self._collect(self._running.popleft())
        return min(self._bad) if self._bad else None

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
