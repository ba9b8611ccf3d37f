"""Checking many entry signatures on every core: what makes `log verify` of a long log fast.
Does I/O (worker processes).

An Ed25519 verification is nearly all of what checking an entry costs (the hash chain and the
Merkle nodes are a few hashes), and the ``cryptography`` package holds the GIL while it
verifies, so threads do not help; processes do. ``SignatureChecker`` collects ``(index,
encoded entry)`` pairs as the chain is walked and hands chunks of ``CHUNK`` to a pool of worker
processes; ``first_bad`` waits for them all and names the lowest index whose signature fails.
Memory: at most ``2 * workers`` chunks are in flight; the walk waits for the oldest beyond that.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..errors import DecodeError, SignatureError
from ._codec import check_signature, entry_signature

__all__ = ["CHUNK", "PARALLEL_MIN", "SignatureChecker", "default_workers"]

CHUNK = 2048
PARALLEL_MIN = 8192  # below this, starting workers costs more than it saves


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else os.cpu_count() or 1)


def _check_chunk(public_key: bytes, chunk: list[tuple[int, bytes]]) -> tuple[int, str] | None:
    key = Ed25519PublicKey.from_public_bytes(public_key)
    for index, encoded in chunk:
        try:
            body, signature = entry_signature(encoded)
            check_signature(key, body, signature)
        except (DecodeError, SignatureError) as exc:
            return index, str(exc)
    return None


class SignatureChecker:
    """Checks entry signatures in worker processes (see the module docstring)."""

    def __init__(self, public_key: bytes, workers: int) -> None:
        self._key = public_key
        self._workers = workers
        context = multiprocessing.get_context("fork" if "fork" in
                                              multiprocessing.get_all_start_methods() else None)
        self._pool = ProcessPoolExecutor(workers, mp_context=context)
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
