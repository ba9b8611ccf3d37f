"""Freed C heap goes back to the system after a burst of work (lifecycle/memory.py): the trim
policy over given figures, a real trim in a fresh interpreter, and the config keys' bounds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bzzz_edge.config import load_config
from bzzz_edge.errors import ConfigError
from bzzz_edge.lifecycle.memory import WORK, HeapTrimmer, release_free_heap

ROOT = Path(__file__).resolve().parents[2]
MB = 1_000_000


class Process:
    """The figures a trimmer reads, set by the test; a trim drops resident to ``after_trim``."""

    def __init__(self) -> None:
        self.resident = 50 * MB
        self.cpu = 0.0
        self.after_trim = 50 * MB
        self.trim_calls = 0

    def trim(self) -> bool:
        self.trim_calls += 1
        self.resident = self.after_trim
        return True

    def trimmer(self, growth: int = MB) -> HeapTrimmer:
        return HeapTrimmer(interval=5.0, growth=growth, resident=lambda: self.resident,
                           cpu_seconds=lambda: self.cpu, trim=self.trim)


def test_an_idle_node_is_trimmed_only_once_its_small_work_adds_up() -> None:
    process = Process()
    trimmer = process.trimmer()
    looks = 0
    while not trimmer.check(5.0):
        process.cpu += 0.02  # 0.4% of a core
        process.resident += 10_000  # under the growth in all
        looks += 1
        assert looks <= WORK / 0.02 + 1
    assert looks >= WORK / 0.02 - 1  # not before: each trim costs page faults afterwards
    assert process.trim_calls == 1


def test_a_burst_is_trimmed_once_it_is_over_and_once_only() -> None:
    process = Process()
    trimmer = process.trimmer()
    process.cpu += 3.0  # busy: 60% of a core
    process.resident += 4 * MB
    assert not trimmer.check(5.0)  # not while busy
    process.cpu += 0.02
    process.after_trim = 51 * MB  # some of the growth is live data
    assert trimmer.check(5.0)
    assert (process.trim_calls, trimmer.trims) == (1, 1)
    for _ in range(20):  # quiet again: what stays (51 MB) is the new baseline
        process.cpu += 0.02
        assert not trimmer.check(5.0)
    assert process.trim_calls == 1


def test_growth_counts_from_the_last_trim_or_the_lowest_size_since() -> None:
    process = Process()
    trimmer = process.trimmer()
    process.resident = 45 * MB  # freed on its own
    assert not trimmer.check(5.0)
    process.resident = 46 * MB + 1  # 1 MB above the lowest seen, though under the start
    assert trimmer.check(5.0)


def test_a_node_kept_busy_is_not_trimmed_until_it_goes_quiet() -> None:
    process = Process()
    trimmer = process.trimmer()
    for _ in range(100):
        process.cpu += 2.0  # 40% of a core, every interval
        process.resident += MB // 2
        assert not trimmer.check(5.0)
    process.cpu += 0.01
    assert trimmer.check(5.0)
    assert process.trim_calls == 1


def test_work_without_growth_is_trimmed_once_quiet() -> None:
    process = Process()
    trimmer = process.trimmer()
    process.cpu += WORK * 2  # a burst whose free heap lies in holes: resident did not grow
    assert not trimmer.check(5.0)
    process.cpu += 0.01
    assert trimmer.check(5.0)
    process.cpu += 0.01
    assert not trimmer.check(5.0)


def test_a_c_library_without_malloc_trim_is_not_counted() -> None:
    process = Process()
    trimmer = HeapTrimmer(interval=5.0, growth=MB, resident=lambda: process.resident,
                          cpu_seconds=lambda: 0.0, trim=lambda: False)
    process.resident += 2 * MB
    assert not trimmer.check(5.0)
    assert trimmer.trims == 0


_FRAGMENT_AND_TRIM = """
import json, sys
from bzzz_edge.lifecycle.memory import HeapTrimmer, resident_bytes
trimmer = HeapTrimmer(interval=1.0, growth=1_000_000)
# Buffers too big for Python's small-object allocator, in the C heap; every other one freed,
# so the free space lies in holes glibc does not give back by itself.
kept = [bytes(1500 + i % 1000) for i in range(8000)]
del kept[::2]
before = resident_bytes()
trimmed = trimmer.check(60.0)  # 60 s since the last look: quiet, however long this took
print(json.dumps({"trimmed": trimmed, "trims": trimmer.trims, "before": before,
                  "after": resident_bytes()}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or not release_free_heap(),
                    reason="needs glibc's malloc_trim")
def test_a_real_fragmented_heap_is_given_back() -> None:
    out = subprocess.run([sys.executable, "-c", _FRAGMENT_AND_TRIM], capture_output=True,
                         text=True, check=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    assert answer["trimmed"] and answer["trims"] == 1
    assert answer["after"] < answer["before"]


def test_the_keys_are_bounded_and_zero_turns_trimming_off() -> None:
    config = load_config(flags={}, environ={})
    assert config.settings.node.heap_trim_interval > 0
    assert config.settings.node.heap_trim_growth_mb > 0
    off = load_config(flags={"node.heap_trim_interval": "0"}, environ={})
    assert off.settings.node.heap_trim_interval == 0
    for key, bad in (("node.heap_trim_interval", "-1"), ("node.heap_trim_growth_mb", "0")):
        with pytest.raises(ConfigError, match=key):
            load_config(flags={key: bad}, environ={})
