"""pysyncobj 0.3.17 side by side with bench_raft.py: run by that script in pysyncobj's own venv.
Does I/O (processes, sockets on 127.0.0.1, journal files).

    python _raft_pysyncobj.py bench NODES WORKDIR [--batch on|off] [--latency N] [--failover R]

starts NODES processes (``node`` mode), each a ``SyncObj`` with a replicated counter and a
journal file (pysyncobj writes its journal through mmap and does not sync it per commit),
measures on the leader ``N`` sequential ``incr(sync=True)`` calls, then ``R`` times kills the
leader with SIGKILL and times the first "became leader" report of another node, restarting
the killed one from its journal. Prints one JSON object.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time


def node_main(index: int, nodes: int, base_port: int, workdir: str, batch: str) -> None:
    from pysyncobj import SyncObj, SyncObjConf, replicated

    def became(old: int, new: int) -> None:
        if new == 2:  # _RAFT_STATE.LEADER
            print(f"LEADER {time.time():.6f}", flush=True)

    class Counter(SyncObj):
        def __init__(self) -> None:
            conf = SyncObjConf(journalFile=os.path.join(workdir, f"journal{index}"),
                               fullDumpFile=os.path.join(workdir, f"dump{index}"),
                               appendEntriesUseBatch=batch == "on", onStateChanged=became,
                               dynamicMembershipChange=False)
            me = f"127.0.0.1:{base_port + index}"
            others = [f"127.0.0.1:{base_port + i}" for i in range(nodes) if i != index]
            super().__init__(me, others, conf)
            self.value = 0

        @replicated
        def incr(self) -> int:
            self.value += 1
            return self.value

    counter = Counter()
    print("STARTED", flush=True)
    for line in sys.stdin:
        words = line.split()
        if words and words[0] == "lat":
            samples, failed = [], 0
            for _ in range(int(words[1])):
                began = time.perf_counter()
                try:
                    counter.incr(sync=True, timeout=5)
                except Exception:  # pysyncobj's SyncObjException: timeout, not leader
                    failed += 1
                    continue
                samples.append(time.perf_counter() - began)
            print("LAT " + json.dumps({"samples": samples, "failed": failed}), flush=True)


class _Proc:
    def __init__(self, index: int, args: list[str]) -> None:
        self.index = index
        self.lines: queue.Queue[str] = queue.Queue()
        self.proc = subprocess.Popen([sys.executable, __file__, "node", *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()


def bench(nodes: int, workdir: str, batch: str, latency: int, failover: int) -> dict[str, object]:
    base_port = 20000 + (os.getpid() % 1000) * 20
    args = lambda i: [str(i), str(nodes), str(base_port), workdir, batch]  # noqa: E731
    procs = [_Proc(i, args(i)) for i in range(nodes)]
    leaders: queue.Queue[tuple[int, float]] = queue.Queue()
    pending: dict[int, list[str]] = {}

    def pump(p: _Proc) -> None:
        while True:
            line = p.lines.get()
            if line.startswith("LEADER"):
                leaders.put((p.index, float(line.split()[1])))
            else:
                pending.setdefault(p.index, []).append(line)

    for p in procs:
        threading.Thread(target=pump, args=(p,), daemon=True).start()
    out: dict[str, object] = {"nodes": nodes, "batch": batch}
    try:
        leader, _ = leaders.get(timeout=60)
        if latency:
            procs[leader].send(f"lat {latency}")
            deadline = time.time() + 120
            while time.time() < deadline:
                got = [x for x in pending.get(leader, []) if x.startswith("LAT ")]
                if got:
                    result = json.loads(got[0][4:])
                    out["latency"], out["failed"] = result["samples"], result["failed"]
                    break
                time.sleep(0.05)
        times = []
        for _ in range(failover):
            victim = procs[leader]
            killed = time.time()
            victim.proc.send_signal(signal.SIGKILL)
            victim.proc.wait()
            while True:
                index, at = leaders.get(timeout=60)
                if index != victim.index and at > killed:
                    break
            times.append(at - killed)
            procs[victim.index] = _Proc(victim.index, args(victim.index))
            threading.Thread(target=pump, args=(procs[victim.index],), daemon=True).start()
            leader = index
            time.sleep(1.5)  # let the restarted node load its journal and catch up
        out["failover"] = times
    finally:
        for p in procs:
            p.proc.kill()
            p.proc.wait()
    return out


def main() -> None:
    if sys.argv[1] == "node":
        i, n, port, workdir, batch = sys.argv[2:7]
        node_main(int(i), int(n), int(port), workdir, batch)
        return
    nodes, workdir = int(sys.argv[2]), sys.argv[3]
    opts = dict(zip(sys.argv[4::2], sys.argv[5::2], strict=False))
    print(json.dumps(bench(nodes, workdir, opts.get("--batch", "on"),
                           int(opts.get("--latency", 300)), int(opts.get("--failover", 0)))))


if __name__ == "__main__":
    main()
