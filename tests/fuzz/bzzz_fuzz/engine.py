"""A small seeded mutation fuzzer: deterministic for a seed, bounded by inputs or by seconds.

Inputs come from a target's seeds (valid encodings) mutated the way libFuzzer mutates them (bit
flips, interesting integers, inserts, deletes, duplicated and spliced ranges, truncation), from
the target's own structured generator when it has one, and now and then from plain random bytes.
No coverage feedback: that is what the atheris engine in run.py adds.
"""

from __future__ import annotations

import random
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

__all__ = ["Finding", "Reader", "Report", "Target", "fuzz", "mutate"]

_INTERESTING = (
    0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000,
    0xFFFFFFFF, 2**63 - 1, 2**63, 2**64 - 1,
)


class Reader:
    """Reads structure out of fuzz bytes, never failing: past the end it reads zeros."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def int(self, size: int) -> int:
        return int.from_bytes(self.take(size).ljust(size, b"\0"), "big")

    def take(self, size: int) -> bytes:
        chunk = self.data[self.pos : self.pos + size]
        self.pos += len(chunk)
        return chunk

    def choice(self, options: tuple[object, ...] | list[object]) -> object:
        return options[self.byte() % len(options)]

    def rest(self) -> bytes:
        chunk = self.data[self.pos :]
        self.pos = len(self.data)
        return chunk


@dataclass(frozen=True)
class Target:
    """A decoder under test: ``run(data)`` raises only on a finding."""

    name: str
    run: Callable[[bytes], None]
    seeds: Callable[[], list[bytes]]
    #: makes a structured input from a random source (msgpack trees with odd values, ...)
    generate: Callable[[random.Random], bytes] | None = None


@dataclass
class Finding:
    target: str
    data: bytes
    error: str  # the exception's type and message
    trace: str


@dataclass
class Report:
    target: str
    inputs: int = 0
    findings: list[Finding] = field(default_factory=list)


def mutate(rng: random.Random, seeds: list[bytes]) -> bytes:
    """One input derived from a random seed by one to eight mutations."""
    data = bytearray(rng.choice(seeds))
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4, 8))):
        _mutate_once(rng, data, seeds)
    return bytes(data)


def _mutate_once(rng: random.Random, data: bytearray, seeds: list[bytes]) -> None:
    op = rng.randrange(8)
    pos = rng.randrange(len(data) + 1)
    if op == 0 and data:  # flip a bit
        i = min(pos, len(data) - 1)
        data[i] ^= 1 << rng.randrange(8)
    elif op == 1:  # an interesting integer, in 1, 2, 4 or 8 bytes, either byte order
        size = rng.choice((1, 2, 4, 8))
        value = rng.choice(_INTERESTING) & ((1 << (8 * size)) - 1)
        raw = value.to_bytes(size, rng.choice(("big", "little")))
        data[pos : pos + size] = raw
    elif op == 2:  # insert random bytes
        data[pos:pos] = rng.randbytes(rng.choice((1, 1, 2, 4, 16, 100)))
    elif op == 3 and data:  # delete a range
        del data[pos : pos + rng.choice((1, 1, 2, 4, 16, 100))]
    elif op == 4 and data:  # duplicate a range somewhere else
        start = rng.randrange(len(data))
        chunk = data[start : start + rng.choice((1, 4, 16, 64))]
        data[pos:pos] = chunk
    elif op == 5:  # splice in part of another seed
        other = rng.choice(seeds)
        start = rng.randrange(len(other) + 1)
        data[pos:] = other[start:]
    elif op == 6:  # truncate
        del data[pos:]
    else:  # overwrite a byte with a random one
        if data:
            data[min(pos, len(data) - 1)] = rng.randrange(256)


def _inputs(target: Target, rng: random.Random) -> Iterator[bytes]:
    seeds = target.seeds()
    yield from seeds
    while True:
        roll = rng.random()
        if roll < 0.05:
            yield rng.randbytes(rng.randrange(64))
        elif roll < 0.35 and target.generate is not None:
            yield target.generate(rng)
        else:
            yield mutate(rng, seeds)


def fuzz(
    target: Target,
    *,
    inputs: int | None = None,
    seconds: float | None = None,
    seed: int = 0,
    max_findings: int = 5,
) -> Report:
    """Run ``target`` on seeded inputs until ``inputs`` ran or ``seconds`` passed."""
    assert inputs is not None or seconds is not None
    rng = random.Random(seed)
    report = Report(target.name)
    deadline = None if seconds is None else time.monotonic() + seconds
    for data in _inputs(target, rng):
        if inputs is not None and report.inputs >= inputs:
            break
        if deadline is not None and report.inputs % 64 == 0 and time.monotonic() > deadline:
            break
        report.inputs += 1
        try:
            target.run(data)
        except Exception as exc:  # a finding: anything the target did not allow
            report.findings.append(
                Finding(target.name, data, f"{type(exc).__name__}: {exc}", traceback.format_exc())
            )
            if len(report.findings) >= max_findings:
                break
    return report
