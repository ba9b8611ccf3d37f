"""What a segment roll of the Raft write-ahead log costs the consensus driver: the wait for
the one write that rolls (``RaftStore.write`` hands it to the log's thread; the driver awaits
its ``result()`` before it acknowledges or counts its own copy), against an ordinary write's,
and how late the event loop runs meanwhile (the roll's Python work holds the GIL). Does I/O
(LMDB and the log's files in a temporary directory on the disk of ``--dir``).

For each live log size (entries of ``--size`` bytes kept after compaction, as the core's
snapshots keep the log bounded: ``snapshot_threshold`` 8192 + ``snapshot_trailing`` 1024 by
default), with the default segment size: the segment is filled up to the last write that
fits, then one more entry is written (it rolls). An ordinary write's wait is that of one
written as the store chooses (``ordinary``: in the driver's thread while syncs are quick)
or handed to the log's thread (``handed``: the roll's hop, without the roll). The roll's
time is split into the checkpoint (joining or encoding the live log, and writing it), the
zero fill of the new segment's room, and the directory syncs; the rest is its fsync and
the hop. Medians of ``--rolls`` rolls.

    python benchmarks/bench_wal_roll.py [--live 1000,10000,100000] [--size 200] [--rolls 5]

The machine is shared: the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bzzz_edge.consensus import Entry, EntryKind, Persist, _wal
from bzzz_edge.consensus._wal_steps import pack, steps_of
from bzzz_edge.consensus.storage import DATABASES, RaftStore
from bzzz_edge.store import Store

_PHASES = ("write_record", "zero_fill", "sync_dir")


class _Timed:
    """Seconds spent in the log module's file helpers (wrapped for the run)."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(_PHASES, 0.0)
        self._saved: dict[str, Callable[..., Any]] = {}

    def install(self) -> None:
        for name in _PHASES:
            original = getattr(_wal, name)
            self._saved[name] = original
            setattr(_wal, name, self._wrap(name, original))

    def _wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any) -> Any:
            began = time.perf_counter()
            try:
                return fn(*args)
            finally:
                self.seconds[name] += time.perf_counter() - began
        return timed

    def reset(self) -> None:
        self.seconds = dict.fromkeys(_PHASES, 0.0)


class _Log:
    """A RaftStore whose log holds ``live`` entries of ``size`` bytes, appended to by the
    leader's kind of write (one term, entries only), compacted to stay at ``live``."""

    def __init__(self, directory: Path, live: int, size: int) -> None:
        self.store = Store(directory / "store", map_size=2**31, databases=DATABASES)
        self.raft = RaftStore(self.store)
        self.raft.persist_sync([])  # (opens the log)
        self.live, self.size = live, size
        self.last = 0

    def actions(self, count: int, *, compact: bool = True) -> list[Persist]:
        entries = tuple(Entry(1, i, EntryKind.COMMAND, os.urandom(self.size))
                        for i in range(self.last + 1, self.last + 1 + count))
        through = self.last + count - self.live
        out = [Persist(1, None, entries)]
        if compact and through > 0:
            out.append(Persist(1, None, (), compact_through=through))
        return out

    async def write(self, actions: list[Persist]) -> float:
        """Seconds until ``actions`` are durable, as the driver waits for them."""
        began = time.perf_counter()
        pending = self.raft.write(actions)
        if pending is not None:
            await pending.result()
        self.last = max(e.index for p in actions for e in p.entries)
        return time.perf_counter() - began

    async def fill(self, *, stop_before_roll: bool) -> list[float]:
        """Append (in batches, then one at a time) until the next single entry would roll
        (or, without ``stop_before_roll``, until the log holds ``live``); the waits of the
        single writes."""
        wal = self.raft._open()
        singles: list[float] = []
        for batch in (512, 64, 8, 1):
            while True:
                if not stop_before_roll and self.last >= self.live:
                    return singles
                actions = self.actions(batch, compact=batch > 1)
                if stop_before_roll and not wal.fits(len(pack(steps_of(actions)))):
                    break
                took = await self.write(actions)
                if batch == 1:
                    singles.append(took)
        return singles

    def close(self) -> None:
        self.raft.close()
        self.store.close()


async def _loop_lateness(stop: trio.Event, worst: list[float]) -> None:
    """How late a 1 ms timer fires at worst, while ``stop`` is not set."""
    while not stop.is_set():
        due = time.perf_counter() + 0.001
        await trio.sleep(0.001)
        worst[0] = max(worst[0], time.perf_counter() - due)


async def _measure(live: int, size: int, rolls: int, where: str | None,
                   timed: _Timed) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-wal-roll-", dir=where) as tmp:
        log = _Log(Path(tmp), live, size)
        try:
            await log.fill(stop_before_roll=False)
            waits, ordinary, handed, late_roll, late_ordinary = [], [], [], [], []
            phases: dict[str, list[float]] = {name: [] for name in _PHASES}
            for _ in range(rolls):
                singles = await log.fill(stop_before_roll=True)
                log.raft._recent_sync = 0.0  # (as on a quick disk: inline when it can be)
                # An ordinary write, watched the same way, for comparison.
                if singles:
                    ordinary.append(statistics.median(singles))
                timed.reset()
                worst = [0.0]
                stop = trio.Event()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_loop_lateness, stop, worst)
                    await trio.sleep(0.005)
                    worst[0] = 0.0
                    seq = log.raft._open()._seq
                    waits.append(await log.write(log.actions(1, compact=False)))
                    assert log.raft._open()._seq == seq + 1, "the write did not roll"
                    late_roll.append(worst[0])
                    worst[0] = 0.0
                    await log.write(log.actions(1, compact=False))  # (the new segment's)
                    await trio.sleep(0.005)
                    late_ordinary.append(worst[0])
                    # The same hop to the log's thread and back, for a write that does not roll.
                    began = time.perf_counter()
                    await log.raft.start(log.actions(1, compact=False)).result()
                    handed.append(time.perf_counter() - began)
                    log.last += 1
                    stop.set()
                for name in _PHASES:
                    phases[name].append(timed.seconds[name])
            wal = log.raft._open()
            return {
                "segment_mib": wal._size / 2**20,
                "roll_wait_ms": statistics.median(waits) * 1e3,
                "roll_wait_max_ms": max(waits) * 1e3,
                "ordinary_wait_ms": statistics.median(ordinary) * 1e3 if ordinary else 0.0,
                "handed_wait_ms": statistics.median(handed) * 1e3,
                "loop_late_roll_ms": statistics.median(late_roll) * 1e3,
                "loop_late_ordinary_ms": statistics.median(late_ordinary) * 1e3,
                "checkpoint_ms": statistics.median(phases["write_record"]) * 1e3,
                "zero_fill_ms": statistics.median(phases["zero_fill"]) * 1e3,
                "dir_sync_ms": statistics.median(phases["sync_dir"]) * 1e3,
            }
        finally:
            log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--live", default="1000,10000,100000",
                        help="live entries kept in the log, comma-separated")
    parser.add_argument("--size", type=int, default=200, help="bytes of each entry's command")
    parser.add_argument("--rolls", type=int, default=5)
    parser.add_argument("--dir", default=None, help="where the temporary log lives")
    args = parser.parse_args()
    timed = _Timed()
    timed.install()
    print(f"segment_bytes {_wal.SEGMENT_BYTES}, entries of {args.size} bytes, "
          f"medians of {args.rolls} rolls; load {os.getloadavg()}")
    columns = ("segment_mib", "roll_wait_ms", "roll_wait_max_ms", "ordinary_wait_ms",
               "handed_wait_ms",
               "loop_late_roll_ms", "loop_late_ordinary_ms", "checkpoint_ms",
               "zero_fill_ms", "dir_sync_ms")
    print("live".rjust(8) + "".join(c.removesuffix("_ms").rjust(20) for c in columns) + "  (ms)")
    for live in (int(n) for n in args.live.split(",")):
        figures = trio.run(_measure, live, args.size, args.rolls, args.dir, timed)
        print(f"{live:8d}" + "".join(f"{figures[c]:20.2f}" for c in columns), flush=True)
    print(f"load {os.getloadavg()}")


if __name__ == "__main__":
    main()
