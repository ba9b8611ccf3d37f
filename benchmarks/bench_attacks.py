"""What issue 8's insider attacks cost the attacker and the node, at full strength. Does I/O.

Each attack runs once (or ``--runs`` times) against a fresh pair of real node processes on
loopback (a victim and an honest node, ``bzzz_edge.cluster``), from an attacker peer holding
the network key (tests/_harness/insider.py). Bounded in count and time; printed as a table:

    attacker: messages (frames or connections), MB sent, seconds the attack took
    node:     RSS growth (peak minus before, MiB), CPU seconds, whether an honest node falsely
              suspected the other (and how often), how the victim ended up

Run: ``python benchmarks/bench_attacks.py [--only 3,4] [--runs 3]`` (medians over runs).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import re
import resource
import secrets
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import msgpack
import psutil

from bzzz_edge.errors import BzzzError
from bzzz_edge.membership import Address as MemberAddress
from bzzz_edge.membership import AliveUpdate, DeadUpdate, Gossip, Status, Sync, SyncEntry
from bzzz_edge.membership._messages import (
    MAX_INCARNATION,
    MAX_META_ENTRIES,
    MAX_META_KEY_LEN,
    MAX_META_VALUE_LEN,
)

ROOT = Path(__file__).resolve().parents[1]
TOPIC = "bzzz/coordination/v1"


def _load(name: str, path: Path) -> ModuleType:
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


insider = _load("_bzzz_test_harness_insider", ROOT / "tests" / "_harness" / "insider.py")
watch = _load("_bzzz_attack_watch", ROOT / "tests" / "attack" / "conftest.py")
Result = dict[str, Any]


def _connect(mesh: Any, *, read: bool = True) -> Any:
    spy = insider.Insider.connect(mesh.victim_address, mesh.network_key)
    if read:
        spy.start_reader()
        spy.wait_joined()
    return spy


def _sent(spy: Any, began: float, **extra: Any) -> Result:
    return {"messages": spy.frames_sent, "bytes": spy.bytes_sent,
            "seconds": time.monotonic() - began, **extra}


def attack_oversized_state(mesh: Any) -> Result:
    meta = {f"{k:02d}".ljust(MAX_META_KEY_LEN, "k"): "v" * MAX_META_VALUE_LEN
            for k in range(MAX_META_ENTRIES)}
    spy, began = _connect(mesh), time.monotonic()
    for _ in range(2):
        spy.send_swim(Sync(False, tuple(
            SyncEntry(secrets.token_bytes(32), 1, Status.ALIVE, MemberAddress("127.0.0.1", 1),
                      meta) for _ in range(150))))
    spy.barrier()
    return _sent(spy, began)


def attack_incarnation(mesh: Any) -> Result:
    spy, began = _connect(mesh), time.monotonic()
    spy.send_swim(Gossip((DeadUpdate(mesh.victim.node_id, MAX_INCARNATION, spy.node_id),)))
    spy.barrier()
    result = _sent(spy, began)
    spy.close()
    victim = mesh.victim
    victim.process.send_signal(signal.SIGTERM)
    victim.process.wait(15)
    try:
        mesh.cluster.start_node(victim, timeout=15)
        result["note"] = "restarts"
    except BzzzError:
        result["note"] = f"restart exits {victim.process.wait(5)}"
    return result


def attack_rpc(mesh: Any, count: int = 250_000) -> Result:
    spy, began = _connect(mesh, read=False), time.monotonic()
    with contextlib.suppress(insider.InsiderClosed):
        spy.send_payloads(spy.rpc_payloads("no.such.method", count))
    result = _sent(spy, began)
    spy.start_reader()

    def answered() -> bool:
        return any(getattr(e, "type", None) == "rpc.resp" and msgpack.unpackb(e.body)[0] == count
                   for e in reversed(spy.received))

    spy.wait_for(answered, timeout=120)
    result["note"] = f"all answered after {time.monotonic() - began:.1f}s"
    return result


def attack_flood(mesh: Any, copies: int = 200_000) -> Result:
    spy, began = _connect(mesh), time.monotonic()
    duplicate = spy.gossip_payloads(TOPIC, 1)[0]
    try:
        for _ in range(copies // 5_000):
            spy.send_payloads([duplicate] * 5_000)
    except insider.InsiderClosed:
        pass
    result = _sent(spy, began)
    spy.barrier(timeout=60)
    result["note"] = "disconnected" if spy.closed.is_set() else "still connected"
    return result


def attack_replay(mesh: Any, fresh: int = 40_000) -> Result:
    flooder, began = _connect(mesh), time.monotonic()
    first = flooder.gossip_payloads(TOPIC, 1)[0]
    flooder.send_payloads([first])
    try:
        for _ in range(fresh // 2_000):
            batch = flooder.gossip_payloads(TOPIC, 2_000)
            flooder.send_payloads(batch)
            if not flooder.barrier(timeout=30):
                break
    except insider.InsiderClosed:
        pass
    # Most of the flood may have been refused unchecked (the flooder's budget), so its last
    # message is no marker: the replay alone must be refused and nothing delivered.
    relay = _connect(mesh)
    before, accepted = mesh.count(*GOSSIP_DROPS), mesh.count("gossip_delivered")
    relay.send_payloads([first])
    relay.barrier()
    refused = mesh.count(*GOSSIP_DROPS) - before == 1
    delivered = mesh.count("gossip_delivered") - accepted
    result = _sent(flooder, began)
    result["note"] = "replay refused" if refused and not delivered else "replay delivered"
    return result


GOSSIP_DROPS = ("gossip_duplicates", "gossip_stale", "gossip_invalid")


def attack_dial_book(mesh: Any, fakes: int = 1_000) -> Result:
    sink = insider.DialSink(fakes)
    try:
        spy, began = _connect(mesh), time.monotonic()
        updates = [AliveUpdate(b"\xff" + secrets.token_bytes(31), 1,
                               MemberAddress("127.0.0.1", port), {"name": "fake"})
                   for port in sink.ports]
        for start in range(0, len(updates), 250):
            spy.send_swim(Gossip(tuple(updates[start:start + 250])))
        spy.barrier()
        result = _sent(spy, began)
        sink.wait_distinct(fakes, timeout=3)
        dialled = len(sink.dials)
        spy.close()
        left = sum(sink.dials.values())
        watch.Mesh.poll_until(lambda: False, timeout=5)  # a fixed window, to measure a rate
        after = (sum(sink.dials.values()) - left) / 5
        result["note"] = (f"{dialled} fakes dialled (by both nodes); {after:.0f} dials/s after "
                          "it left")
        return result
    finally:
        sink.close()


def attack_descriptors(mesh: Any, count: int = 1_100, limit: int = 1_024) -> Result:
    resource.prlimit(mesh.pid(), resource.RLIMIT_NOFILE, (limit, limit))
    began = time.monotonic()
    sources = [f"127.0.0.{n}" for n in range(2, 2 + count // 60 + 1)]
    held = insider.half_open(mesh.victim_address, count, source_ips=sources, per_ip=60,
                             timeout=2)
    seconds = time.monotonic() - began
    watch.Mesh.poll_until(lambda: len(list(Path(f"/proc/{mesh.pid()}/fd").iterdir()))
                          >= limit - 4, timeout=5)
    t0 = time.monotonic()
    status = mesh.http_status(mesh.victim.api + "/health/live", timeout=10)
    health = time.monotonic() - t0
    for sock in held:
        sock.close()
    emfile = sum(1 for m in mesh.victim.messages if "EMFILE" in m)
    return {"messages": len(held), "bytes": 0, "seconds": seconds,
            "note": f"/health/live {status or 'no answer'} in {health:.1f}s; {emfile} EMFILE logs"}


def bench_mdns(base: Path, fakes: int = 1_000) -> Result:
    """Attack 6 through mDNS: a victim (mDNS on) and an attacker announcing ``fakes`` services,
    in two network namespaces. Counts the victim's dials to them, before and after they leave."""
    import contextlib
    import io
    import subprocess
    import threading

    from bzzz_edge.cli import main as cli
    from bzzz_edge.identity import load_network_key, network_fingerprint

    netns = _load("_bzzz_test_harness_netns", ROOT / "tests" / "_harness" / "netns.py")
    with netns.Lan() as lan:
        victim_host, attacker_host = lan.add_hosts(2)
        with contextlib.redirect_stdout(io.StringIO()):
            cli(["init", "--data-dir", str(base / "victim")])
        key = load_network_key(base / "victim" / "network.key")
        proc = victim_host.popen(
            [sys.executable, "-m", "bzzz_edge", "run", "--data-dir", str(base / "victim"),
             "--listen", "0.0.0.0:0", "--api-listen", "127.0.0.1:0", "--log-format", "json",
             "--set", "network.mdns=true"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
            text=True, cwd=base)
        logs = netns.LineReader(proc.stderr, "victim")
        logs.wait_for(lambda e: str(e.get("msg", "")).startswith("mDNS: announcing"), 30)
        process = psutil.Process(proc.pid)
        rss, cpu = process.memory_info().rss / 2**20, sum(process.cpu_times()[:2])
        began = time.monotonic()
        attacker = attacker_host.popen(
            [sys.executable, str(ROOT / "tests" / "attack" / "mdns_attacker.py"),
             "--fingerprint", network_fingerprint(key), "--ip", attacker_host.ip,
             "--count", str(fakes)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        events = netns.LineReader(attacker.stdout, "attacker")
        events.wait_for(lambda e: e["event"] == "registered", 300)
        seconds = time.monotonic() - began
        window = threading.Event()
        window.wait(5)  # a fixed window: what the victim dials in 5 s
        dialled = {e["port"] for e in list(events.items)
                   if e["event"] == "dial" and e["source"] == victim_host.ip}
        attacker.stdin.write("leave\n")
        attacker.stdin.flush()
        left = events.wait_for(lambda e: e["event"] == "left", 120)["t"]
        window.wait(5)
        late = sum(1 for e in list(events.items) if e["event"] == "dial"
                   and e["source"] == victim_host.ip and e["t"] > left + 1) / 4
        result: Result = {
            "messages": fakes, "bytes": 0, "seconds": seconds,
            "rss": _peak_mb(proc.pid) - rss,
            "cpu": sum(process.cpu_times()[:2]) - cpu, "exit": _fate(proc),
            "note": f"{len(dialled)} fakes dialled in 5 s; {late:.0f} dials/s after they left"}
        attacker.stdin.close()
        proc.terminate()
        proc.wait(20)
        return result


ATTACKS: dict[int, tuple[str, Callable[[Any], Result]]] = {
    1: ("oversized member state", attack_oversized_state),
    2: ("incarnation 2**63-1", attack_incarnation),
    3: ("250k unread RPCs", attack_rpc),
    4: ("200k duplicate gossip", attack_flood),
    5: ("40k fresh + replay", attack_replay),
    6: ("1000 gossiped members", attack_dial_book),
    7: ("1100 half-open conns", attack_descriptors),
    8: ("6 via 1000 mDNS services", lambda mesh: {}),  # runs in namespaces: bench_mdns
}


def run_one(number: int, base: Path) -> Result:
    if number == 8:
        return bench_mdns(base)
    attack = ATTACKS[number][1]
    cluster = watch.LocalCluster(base, 2)
    try:
        cluster.start()
        cluster.wait_for_mesh(timeout=20)
        mesh = watch.Mesh(cluster, watch.load_network_key(base / "network.key"))
        process = psutil.Process(mesh.pid())
        rss, cpu = mesh.rss_mb(), sum(process.cpu_times()[:2])
        mark = cluster.log_positions()
        result = attack(mesh)
        victim = mesh.victim
        if victim.running and victim.process.pid == process.pid:
            result["rss"] = mesh.peak_rss_mb() - rss
            result["cpu"] = sum(process.cpu_times()[:2]) - cpu
        result["flaps"] = len(mesh.flaps(mark))
        result["exit"] = _fate(victim.process)
        return result
    finally:
        cluster.stop()


def _peak_mb(pid: int) -> float:
    """A process's high-water mark of resident memory (VmHWM), in MiB."""
    match = re.search(r"^VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    return int(match.group(1)) / 1024 if match else float("nan")


def _fate(process: Any) -> str:
    """"up", or the exit code; a node stopped by the attack takes a moment to exit."""
    try:
        return f"exit {process.wait(2)}"
    except Exception:  # still running after 2 s
        return "up"


def _medians(results: list[Result]) -> Callable[[str], float]:
    def median(key: str) -> float:
        values = [r[key] for r in results if key in r]
        return statistics.median(values) if values else float("nan")

    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="1,2,3,4,5,6,7,8",
                        help="attack numbers, e.g. 3,4 (8: attack 6 through mDNS, needs root)")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    print(f"{'attack':<28}{'msgs':>9}{'MB':>7}{'s':>6} | {'RSS+MiB':>8}{'CPU s':>7}"
          f"{'flaps':>6}  victim, notes")
    for number in (int(n) for n in args.only.split(",")):
        results = []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="bench-attacks-") as tmp:
                results.append(run_one(number, Path(tmp)))

        median = _medians(results)
        last = results[-1]
        print(f"{number}. {ATTACKS[number][0]:<25}{median('messages'):>9.0f}"
              f"{median('bytes') / 1e6:>7.1f}{median('seconds'):>6.1f} | {median('rss'):>8.0f}"
              f"{median('cpu'):>7.1f}{median('flaps'):>6.0f}  {last['exit']}, "
              f"{last.get('note', '')}", flush=True)


if __name__ == "__main__":
    main()
