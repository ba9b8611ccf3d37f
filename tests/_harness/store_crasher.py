"""A writer process to kill: a zygote that forks one writer child per round.

Reads commands on stdin, one per line: ``go DIR SEED``. For each it forks a child that opens
the store in DIR and runs 8 concurrent trio tasks putting content; each acknowledged write is
reported on stdout as ``ack ADDRESS VERSION SHA256`` (one os.write per line, so lines are whole
even when the child dies mid-write). The zygote prints ``pid N`` before the child starts
writing and ``exit N`` once it has reaped it. Forking from a zygote with everything imported
makes a round cost milliseconds, so a test can kill a writer a hundred times in seconds.
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
from pathlib import Path

import trio

from bzzz_edge.store import Store
from bzzz_edge.store.content import DATABASES, ContentStore

WRITERS = 8


def _child(directory: str, seed: int) -> None:
    store = Store(Path(directory), map_size=2**20, databases=DATABASES)  # small: it must grow
    content = ContentStore(store, author="crasher", max_content_bytes=2**20,
                           compress_min_bytes=64)
    rng = random.Random(seed)

    async def writer(task: int) -> None:
        for seq in range(10**9):
            address = f"ucxl://w{task}:r@crash:t/*^/doc{rng.randrange(6)}"
            size = rng.choice([10, 300, 5000, 40000])
            body = (f"{seed}-{task}-{seq}-".encode() * (size // 8 + 1))[:size]
            version = await content.put(address, body)
            line = f"ack {version.address} {version.version} {hashlib.sha256(body).hexdigest()}\n"
            os.write(1, line.encode())

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for task in range(WRITERS):
                nursery.start_soon(writer, task)

    trio.run(main)


def main() -> None:
    for line in sys.stdin:
        _, directory, seed = line.split()
        pid = os.fork()
        if pid == 0:
            try:
                _child(directory, int(seed))
            finally:
                os._exit(1)
        os.write(1, f"pid {pid}\n".encode())
        os.waitpid(pid, 0)
        os.write(1, f"exit {pid}\n".encode())


if __name__ == "__main__":
    main()
