"""Kill -9 a process appending to the signed log, again and again; check after each reopen.

Usage: log_crash.py DIR ROUNDS SEED. One process (this one, with no threads and no open store
across a fork) forks a child per round; the child opens the store, appends from 8 concurrent
trio tasks and writes each acknowledged entry's index to a pipe; this process reads acks for a
random few milliseconds, SIGKILLs the child, then reopens the store read-only and checks that
the log verifies and holds every acknowledged entry. Prints one JSON line with the outcome.
"""

from __future__ import annotations

import functools
import json
import os
import random
import select
import signal
import sys
import time
from pathlib import Path


def child(path: Path, ack_fd: int) -> None:
    import trio

    from bzzz_edge.identity import Identity
    from bzzz_edge.signedlog.service import LogService
    from bzzz_edge.signedlog.storage import DATABASES
    from bzzz_edge.store import Store

    identity = Identity.load(path.parent / "identity.key")
    store = Store(path, map_size=4 * 2**20, databases=DATABASES)
    service = LogService(store, identity)

    async def writer(n: int) -> None:
        for i in range(10**9):
            entry = await service.append("task_progress", {"w": n, "i": i, "pad": "x" * 64})
            os.write(ack_fd, b"%d\n" % entry.index)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            for n in range(8):
                nursery.start_soon(writer, n)

    trio.run(main)


def check(path: Path, author: bytes) -> int:
    from bzzz_edge.signedlog.storage import LogReader, open_readonly, verify_stored

    env, dbs = open_readonly(path)
    try:
        with env.begin() as txn:
            return verify_stored(LogReader(txn, dbs), author).length
    finally:
        env.close()


def main() -> None:
    base, rounds, seed = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    from bzzz_edge.identity import Identity

    identity = Identity.generate()
    identity.save(base / "identity.key")
    path = base / "store"
    rng = random.Random(seed)
    acked_max, lengths = -1, []
    for _ in range(rounds):
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            try:
                child(path, write_fd)
            finally:
                os._exit(1)
        os.close(write_fd)
        buffer = b""
        deadline = time.monotonic() + 10.0  # opening the store: seconds on a loaded machine
        kill_after = rng.uniform(0.002, 0.06)
        started = None
        while time.monotonic() < deadline:
            ready, _, _ = select.select([read_fd], [], [], 0.001)
            if ready:
                chunk = os.read(read_fd, 65536)
                if not chunk:
                    break
                buffer += chunk
                if started is None:
                    started = time.monotonic()
                    deadline = started + kill_after
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        buffer += b"".join(iter(functools.partial(os.read, read_fd, 65536), b""))
        os.close(read_fd)
        acked = [int(x) for x in buffer.split()]
        acked_max = max([acked_max, *acked])
        length = check(path, identity.node_id)
        lengths.append(length)
        if length <= acked_max:
            print(json.dumps({"ok": False, "acked": acked_max, "length": length}))
            return
    print(json.dumps({"ok": True, "rounds": rounds, "length": lengths[-1],
                      "acked": acked_max, "rounds_with_acks": sum(1 for x in lengths if x)}))


if __name__ == "__main__":
    main()
