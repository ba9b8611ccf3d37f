"""Crash durability: a writer process acknowledging writes over a pipe, with 8 concurrent
writers, is killed with SIGKILL at random moments 100 times; after each kill the store opens,
every acknowledged write is there with its exact content, and nothing is half-visible (every
version of every address has its whole, correct content)."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import msgpack

from bzzz_edge.store import Store
from bzzz_edge.store.content import DATABASES, ContentStore

HARNESS = Path(__file__).parents[1] / "_harness" / "store_crasher.py"
KILLS = 100


def _verify(directory: Path, acknowledged: dict[tuple[str, int], str]) -> int:
    store = Store(directory, map_size=2**20, databases=DATABASES)
    try:
        content = ContentStore(store, author="check", max_content_bytes=2**20,
                               compress_min_bytes=64)
        for (address, _), digest in acknowledged.items():
            version, body = content.get(address)
            assert version.hash == digest and hashlib.sha256(body).hexdigest() == digest
        versions = 0
        with store.reading("ucxl_keys") as txn:
            keys = [msgpack.unpackb(v) for _, v in txn.cursor()]
        for key in keys:
            for version in content.history(key["a"]):
                _, body = content.get(version.address)
                assert hashlib.sha256(body).hexdigest() == version.hash
                versions += 1
        assert content.stats()["versions"] == versions
        return versions
    finally:
        store.close()


def test_acknowledged_writes_survive_100_sigkills(tmp_path):
    directory = tmp_path / "store"
    rng = random.Random(1234)
    zygote = subprocess.Popen([sys.executable, str(HARNESS)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, bufsize=0)
    assert zygote.stdin is not None and zygote.stdout is not None
    acknowledged: dict[tuple[str, int], str] = {}
    total_versions = 0
    try:
        for round_ in range(KILLS):
            zygote.stdin.write(f"go {directory} {round_}\n".encode())
            zygote.stdin.flush()
            first = zygote.stdout.readline().split()
            assert first[0] == b"pid", first
            pid = int(first[1])
            target = rng.choice([0, 0, 1, 3, 10, 30, 80])  # acks to see before the kill
            seen = 0
            while seen < target:
                line = zygote.stdout.readline().decode()
                assert line.startswith("ack "), line  # the child must not die on its own
                _, address, version, digest = line.split()
                acknowledged[(address, int(version))] = digest
                seen += 1
            os.kill(pid, signal.SIGKILL)
            while True:  # acks the child wrote before it died count too
                line = zygote.stdout.readline().decode()
                if line.startswith("exit "):
                    break
                _, address, version, digest = line.split()
                acknowledged[(address, int(version))] = digest
            total_versions = _verify(directory, acknowledged)
    finally:
        zygote.stdin.close()
        zygote.wait(10)
    assert len(acknowledged) > KILLS and total_versions >= len(acknowledged)
