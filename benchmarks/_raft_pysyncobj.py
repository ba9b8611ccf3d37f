"""pysyncobj 0.3.17 side by side with bench_raft.py: run by that script in pysyncobj's own venv.
Does I/O (processes, sockets on 127.0.0.1, journal files).

    python _raft_pysyncobj.py bench NODES WORKDIR [--batch on|off] [--latency N] [--failover R]
    python _raft_pysyncobj.py claims NODES WORKDIR [--rounds R] [--warmup W]

``bench`` starts NODES processes (``node`` mode), each a ``SyncObj`` with a replicated counter
and a journal file (pysyncobj writes its journal through mmap and does not sync it per
commit), measures on the leader ``N`` sequential ``incr(sync=True)`` calls, then ``R`` times
waits until every node follows one leader, kills that leader with SIGKILL and times the first
"became leader" report of another node, restarting the killed one from its journal. Prints
one JSON object.

``claims`` (for bench_coordination.py) starts NODES processes (``claimer`` mode) that are
themselves the contenders: each a ``SyncObj`` in memory (no journal), batching off, with a
replicated ``claim(key, me)`` that keeps the first claimant of a key and returns it. A
contested round tells every process the same fresh key at one instant (a line on its stdin);
each calls ``claim(key, me, sync=True)`` (a follower's call goes to the leader) and prints the
winner it was told; the round ends when every process has answered, and must have exactly
one winner. At rest: one process claims. Prints ``{"rest": [ms...], "contested": [ms...]}``.
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
        elif words and words[0] == "who":
            # Read from pysyncobj's own thread's fields (getStatus() iterates dicts that
            # thread changes): this node's state, the leader it follows, its term.
            leader = counter._getLeader()
            state = counter._SyncObj__raftState  # type: ignore[attr-defined]
            print(f"WHO {state} {leader.id if leader else '-'} {counter.raftCurrentTerm}",
                  flush=True)


def claimer_main(index: int, nodes: int, base_port: int) -> None:
    from pysyncobj import SyncObj, SyncObjConf, replicated

    me = f"claimer{index}"

    class Claims(SyncObj):
        def __init__(self) -> None:
            conf = SyncObjConf(appendEntriesUseBatch=False, dynamicMembershipChange=False)
            others = [f"127.0.0.1:{base_port + i}" for i in range(nodes) if i != index]
            super().__init__(f"127.0.0.1:{base_port + index}", others, conf)
            self.owners: dict[str, str] = {}

        @replicated
        def claim(self, key: str, who: str) -> str:
            return self.owners.setdefault(key, who)

    claims = Claims()
    while claims._getLeader() is None:  # (pysyncobj has no public "is there a leader")
        time.sleep(0.05)
    print("STARTED", flush=True)
    for line in sys.stdin:
        key = line.strip()
        try:
            winner = claims.claim(key, me, sync=True, timeout=10)
        except Exception as exc:  # pysyncobj's SyncObjException: timeout, not leader
            winner = f"FAILED {exc!r}"
        print(f"WINNER {winner}", flush=True)


def claims(nodes: int, rounds: int, warmup: int) -> dict[str, list[float]]:
    base_port = 21000 + (os.getpid() % 1000) * 20
    procs = [_Proc(i, [str(i), str(nodes), str(base_port)], mode="claimer")
             for i in range(nodes)]
    try:
        for p in procs:
            if p.lines.get(timeout=60) != "STARTED":
                raise SystemExit("a pysyncobj claimer did not start")
        out: dict[str, list[float]] = {}
        for mode in ("rest", "contested"):
            samples = []
            for number in range(warmup + rounds):
                key = f"{mode}-{number}"
                claimants = procs if mode == "contested" else [procs[number % nodes]]
                began = time.perf_counter()
                for p in claimants:
                    p.send(key)
                winners = {p.lines.get(timeout=30) for p in claimants}
                took = (time.perf_counter() - began) * 1000
                if len(winners) != 1 or not next(iter(winners)).startswith("WINNER claimer"):
                    raise SystemExit(f"pysyncobj round {key}: answers {sorted(winners)}")
                if number >= warmup:
                    samples.append(took)
            out[mode] = samples
        return out
    finally:
        for p in procs:
            p.proc.kill()
            p.proc.wait()


class _Proc:
    def __init__(self, index: int, args: list[str], mode: str = "node") -> None:
        self.index = index
        self.lines: queue.Queue[str] = queue.Queue()
        self.answers: queue.Queue[str] = queue.Queue()
        self.proc = subprocess.Popen([sys.executable, __file__, mode, *args],
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
    address = lambda i: f"127.0.0.1:{base_port + i}"  # noqa: E731
    procs = [_Proc(i, args(i)) for i in range(nodes)]
    leaders: queue.Queue[tuple[int, float]] = queue.Queue()

    def pump(p: _Proc) -> None:
        """LEADER lines (from the state-change callback, any time) to ``leaders``; every other
        line (answers to this harness's commands) to the node's ``answers``."""
        while True:
            line = p.lines.get()
            if line.startswith("LEADER"):
                leaders.put((p.index, float(line.split()[1])))
            else:
                p.answers.put(line)

    def answer(p: _Proc, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            line = p.answers.get(timeout=max(0.0, deadline - time.monotonic()))
            if line.startswith(prefix):
                return line

    def settled_leader(timeout: float = 60) -> int:
        """The leader every running node follows, once they all agree and it says it leads.

        After a restart pysyncobj (no pre-vote) may elect again: a restarted node that times
        out before the leader reaches it stands with a higher term. The failover loop used to
        kill the first leader reported after the previous kill, which could be a follower by
        then; no new leader followed and the run ended on queue.Empty after 60 s (or timed a
        re-election already under way). bench_raft.py kills a coordinator every running node
        follows, and so does this.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            views = []
            for p in procs:
                p.send("who")
            for p in procs:
                views.append(answer(p, "WHO ", 10).split()[1:])
            followed = {view[1] for view in views}
            if len(followed) == 1 and (only := followed.pop()) != "-":
                index = next(i for i in range(nodes) if address(i) == only)
                if views[index][0] == "2":  # _RAFT_STATE.LEADER
                    return index
            time.sleep(0.05)
        raise SystemExit(f"pysyncobj: no leader all {nodes} nodes follow within {timeout:g}s")

    for p in procs:
        threading.Thread(target=pump, args=(p,), daemon=True).start()
    out: dict[str, object] = {"nodes": nodes, "batch": batch}
    try:
        for p in procs:
            answer(p, "STARTED", 60)
        leader = settled_leader()
        if latency:
            procs[leader].send(f"lat {latency}")
            result = json.loads(answer(procs[leader], "LAT ", 300)[4:])
            out["latency"], out["failed"] = result["samples"], result["failed"]
        times = []
        for _ in range(failover):
            victim = procs[settled_leader()]
            killed = time.time()
            victim.proc.send_signal(signal.SIGKILL)
            victim.proc.wait()
            while True:  # the first survivor to become leader after the kill
                index, at = leaders.get(timeout=60)
                if index != victim.index and at > killed:
                    break
            times.append(at - killed)
            procs[victim.index] = _Proc(victim.index, args(victim.index))
            threading.Thread(target=pump, args=(procs[victim.index],), daemon=True).start()
            answer(procs[victim.index], "STARTED", 60)
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
    if sys.argv[1] == "claimer":
        i, n, port = sys.argv[2:5]
        claimer_main(int(i), int(n), int(port))
        return
    nodes, workdir = int(sys.argv[2]), sys.argv[3]
    opts = dict(zip(sys.argv[4::2], sys.argv[5::2], strict=False))
    if sys.argv[1] == "claims":
        print(json.dumps(claims(nodes, int(opts.get("--rounds", 200)),
                                int(opts.get("--warmup", 10)))))
        return
    print(json.dumps(bench(nodes, workdir, opts.get("--batch", "on"),
                           int(opts.get("--latency", 300)), int(opts.get("--failover", 0)))))


if __name__ == "__main__":
    main()
