"""Decoding and checking many entries on every core: what makes `log verify` of a long log fast.
Does I/O (threads).

Checking an entry is an Ed25519 verification (about 105 us here), which ``cryptography`` runs
without the GIL (from version 50: pyca/cryptography#15164), and some 8 us of Python that needs
it: the decode (msgpack, the canonical form, the fields) and the entry's hash. ``decoded``
hands chunks of ``CHUNK`` ``(index, encoded entry)`` pairs to a pool of threads, each of which
decodes and verifies its entries one after the other, and yields the results in log order to
the calling thread, which chains them (index, author, previous hash, Merkle nodes: a few us
each) and otherwise waits, without the GIL, for the oldest chunk.

Why each thread does both: a thread back from a verification needs the GIL for a moment before
its next one. The earlier split (the walking thread decoding every entry, the threads only
verifying, and decoding each entry a second time to get at its signature) kept the GIL with
the walker for long stretches, and a thread back from a verification waited for it up to the
switch interval: on a busy machine two threads were slower than one. Interleaved in every
thread, one thread's Python runs while the other's verification does, and each hands the GIL
on as it starts its next verification. ``verify_stored`` still shortens the switch interval
(``SWITCH_INTERVAL``) while the calling thread chains a chunk.

No fork, so it is safe beside trio and any other thread (the node's ``log verify`` endpoint
uses it too). Memory: at most ``2 * workers + 1`` chunks are in flight.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Generator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor

from ..errors import DecodeError, SignatureError
from ._codec import Decoded, decode_entry

__all__ = ["CHUNK", "PARALLEL_MIN", "SWITCH_INTERVAL", "decoded", "default_workers"]

CHUNK = 256
PARALLEL_MIN = 2 * CHUNK  # below this, the calling thread checks them as it walks
SWITCH_INTERVAL = 0.0005  # seconds: sys.setswitchinterval while checking (see verify_stored)


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else os.cpu_count() or 1)


def _decode_chunk(key: bytes, chunk: list[tuple[int, bytes]]) -> list[
        tuple[int, Decoded]]:
    out: list[tuple[int, Decoded]] = []
    for index, encoded in chunk:
        try:
            out.append((index, decode_entry(encoded, key)))
        except (DecodeError, SignatureError) as exc:
            out.append((index, exc))
            break  # the chain stops at the first bad entry: nothing after it is looked at
    return out


def decoded(entries: Iterable[tuple[int, bytes]], public_key: bytes,
            workers: int) -> Generator[tuple[int, Decoded], None, None]:
    """``(index, decoded entry or its error)`` for each of ``entries`` (``(index, encoded)``),
    in their order, decoded and signature-checked by ``workers`` threads.

    Closing the iterator early (the caller found a bad entry) cancels the chunks not started
    and waits for those running.
    """
    key = public_key
    pool = ThreadPoolExecutor(workers, thread_name_prefix="log-verify")
    running: deque[Future[list[tuple[int, Decoded]]]] = deque()
    try:
        chunk: list[tuple[int, bytes]] = []
        for item in entries:
            chunk.append(item)
            if len(chunk) >= CHUNK:
                running.append(pool.submit(_decode_chunk, key, chunk))
                chunk = []
                if len(running) > 2 * workers:
                    yield from running.popleft().result()
        if chunk:
            running.append(pool.submit(_decode_chunk, key, chunk))
        while running:
            yield from running.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
