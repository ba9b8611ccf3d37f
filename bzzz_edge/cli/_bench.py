"""``bzzz-edge bench``: coordination latency on a local cluster it starts, or on the running
network through a node's API. Does I/O (processes, HTTP, the terminal).

Prints (or with ``--json`` emits) what a user pastes into a bug report: version,
implementation, node count, platform, p50/p90/p99/max and a histogram per mode, the failover
time, and each node's idle CPU and RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import __version__, signatures
from ..errors import BzzzError

__all__ = ["add_bench_command"]

MODES = ("rest", "contested", "failover")
_SETTLE_S = 5.0  # quiet before idle CPU is measured
_TITLES = {"rest": "at rest (one claimant)", "contested": "contested (every node claims at once)",
           "failover": "failover (kill -9 of the coordinator; every survivor claims)"}

_DESCRIPTION = """\
Measure coordination latency: a round announces a task on one node, claims it, and ends when
the claim is settled (every claimant has its answer) and the winner is known on every node.
"Known on a node" means that node's stream of the bzzz/coordination/v1 topic (its SSE endpoint,
what an agent on that node subscribes to) delivered the task_claimed event naming the winner:
the benchmark holds one stream open to each node, so nothing is polled. After each round, and
outside its time, every node's API is read once: a node naming another owner fails the run, a
node whose task state did not show the owner yet is counted as lagging. Modes: 'rest' (one
claimant, the node after the announcer), 'contested' (every node claims at once; exactly one
must win and every loser must be told who), 'failover' (local cluster only: the coordinator is
killed with kill -9 and every survivor claims, retrying what cannot be decided yet; the time
runs from the kill to the winner known on every survivor). Then each node's idle CPU (percent
of one core, after 5 s of quiet) and RSS. Without --data-dir/--api it starts --nodes
processes on 127.0.0.1 (in parallel, removed afterwards); with them it benchmarks the running
node (rest only with a single node's API)."""


def add_bench_command(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``bench`` on the top-level subparsers ``sub``."""
    p = sub.add_parser("bench", parents=parents, help="measure coordination latency (a local "
                       "cluster, or the running network)", description=_DESCRIPTION)
    p.set_defaults(func=cmd_bench)
    p.add_argument("--nodes", type=int, metavar="N",
                   help="node processes of the local cluster (default 10)")
    p.add_argument("--rounds", type=int, default=200, metavar="R",
                   help="measured rounds per mode (default 200)")
    p.add_argument("--warmup", type=int, default=10, metavar="W",
                   help="rounds per mode run first and not counted (default 10)")
    p.add_argument("--modes", default=None, metavar="M,M",
                   help="which of rest, contested, failover (default: all that apply)")
    p.add_argument("--idle-seconds", type=float, default=5.0, metavar="S",
                   help="how long idle CPU is averaged over (default 5; 0: skip)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S",
                   help="seconds a round (and forming the cluster) may take (default 30)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _modes(args: argparse.Namespace, local: bool) -> list[str]:
    if args.modes is None:
        return list(MODES) if local else ["rest"]
    wanted = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in wanted if m not in MODES]
    if bad or not wanted:
        raise BzzzError(f"--modes {args.modes!r}: choose among {', '.join(MODES)}")
    if "failover" in wanted and not local:
        raise BzzzError("--modes failover kills the coordinator: only on a local cluster "
                        "(leave out --data-dir and --api)")
    return [m for m in MODES if m in wanted]


def _check(args: argparse.Namespace) -> bool:
    """Validate the arguments; True for a local cluster."""
    local = args.data_dir is None and args.api is None
    if not local and args.nodes is not None:
        raise BzzzError("--nodes starts a local cluster; --data-dir/--api benchmark a running "
                        "node: give one or the other")
    if args.nodes is None:
        args.nodes = 10
    if local and not 1 <= args.nodes <= 64:
        raise BzzzError(f"--nodes {args.nodes}: between 1 and 64")
    if args.rounds < 1:
        raise BzzzError(f"--rounds {args.rounds}: at least 1")
    if args.warmup < 0:
        raise BzzzError(f"--warmup {args.warmup}: 0 or more")
    if args.idle_seconds < 0 or args.timeout <= 0:
        raise BzzzError("--idle-seconds must be 0 or more and --timeout more than 0")
    modes = _modes(args, local)
    if local and args.nodes < 3 and "failover" in modes:
        if args.modes is not None:
            raise BzzzError("--modes failover needs at least 3 nodes (a majority must survive)")
        modes.remove("failover")
    args.chosen_modes = modes
    return local


def cmd_bench(args: argparse.Namespace) -> int:
    local = _check(args)
    if local:
        return _bench_local(args)
    return _bench_network(args)


def _trio_run(fn: Callable[..., Any], *args: Any) -> Any:
    """``trio.run``, with an error from inside a nursery raised as itself (one line), not as
    the exception group that carries it."""
    import trio

    try:
        return trio.run(fn, *args)
    except BaseExceptionGroup as group:
        first = next((e for e in _leaves(group) if isinstance(e, BzzzError | KeyboardInterrupt)),
                     None)
        if first is not None:
            raise first from None
        raise


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for e in error.exceptions for leaf in _leaves(e)]
    return [error]


def _bench_local(args: argparse.Namespace) -> int:
    from ..bench import form_cluster

    base = Path(tempfile.mkdtemp(prefix="bzzz-bench-"))
    cluster = None
    try:
        with _Progress(args.json) as progress:
            progress.note(f"starting {args.nodes} nodes")
            cluster = form_cluster(base, args.nodes, timeout=max(args.timeout, 30 + args.nodes))
            report = _trio_run(_run, args, [n.api for n in cluster.nodes], cluster, progress)
        report["cluster"] = "local"
        _emit(args, report)
        return 0
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


def _bench_network(args: argparse.Namespace) -> int:
    from ._common import NodeApi

    api = NodeApi(args)  # no node at --data-dir: one line saying so
    api.get("/api/v1/node")
    with _Progress(args.json) as progress:
        report = _trio_run(_run, args, [api.base], None, progress, api.token)
    report["cluster"] = "network"
    _emit(args, report)
    return 0


async def _run(args: argparse.Namespace, apis: list[str], cluster: Any, progress: _Progress,
               token: str = "") -> dict[str, Any]:
    import trio

    from ..bench import Rounds, Target, percentile, summarize

    targets = [Target(i, api) for i, api in enumerate(apis)]
    rounds = Rounds(targets, token=token, timeout=args.timeout)
    infos = [await _info(t) for t in targets]
    report = _header(args, infos)
    if cluster is None:
        await _wait_for_coordinator(targets[0], args.timeout)
    async with trio.open_nursery() as nursery:
        await rounds.watch(nursery)
        for mode in args.chosen_modes:
            if mode == "failover":
                continue
            run = rounds.at_rest if mode == "rest" else rounds.contested
            results = []
            progress.start(_TITLES[mode], args.warmup + args.rounds)
            for number in range(args.warmup + args.rounds):
                result = await run(number)
                if number >= args.warmup:
                    results.append(result)
                progress.advance()
            progress.stop()
            summary = summarize([r.total_ms for r in results])
            claims = [r.total_ms - r.announce_ms for r in results]
            report[mode] = {**summary.as_dict(), "samples_ms": [round(r.total_ms, 3)
                                                                 for r in results],
                            "lagging_rounds": sum(1 for r in results if r.lagging),
                            "claimants": results[0].claimants,
                            # where the time goes: the announce answered, the last claim
                            # answered, the last node's event (medians, from the round's start)
                            "announce_p50_ms": _median([r.announce_ms for r in results]),
                            "settled_p50_ms": _median([r.settled_ms for r in results]),
                            "known_p50_ms": _median([r.known_ms for r in results]),
                            # the claim round alone (from the announce answered to the end):
                            # the shape of a round of a lock service, which announces nothing
                            "claim_p50_ms": _median(claims),
                            "claim_p99_ms": round(percentile(claims, 99), 3)}
        if args.idle_seconds > 0:
            report["idle"] = await _idle(args, targets, infos, progress)
        if "failover" in args.chosen_modes:
            report["failover"] = await _failover(rounds, cluster, progress)
        await rounds.close()
        nursery.cancel_scope.cancel()
    return report


def _median(values: list[float]) -> float:
    from ..bench import percentile

    return round(percentile(values, 50), 3)


async def _info(target: Any) -> dict[str, Any]:
    status, info = await target.conn.call("GET", "/api/v1/node")
    if status != 200 or not isinstance(info, dict):
        raise BzzzError(f"{target.api}: /api/v1/node answered HTTP {status}")
    target.node_id, target.pid = info.get("node_id", ""), info.get("pid")
    return info


async def _wait_for_coordinator(target: Any, timeout: float) -> None:
    """Until the node knows a coordinator (a node that just started elects one first)."""
    import trio

    with trio.move_on_after(timeout):
        while True:
            status, answer = await target.conn.call("GET", "/api/v1/coordination")
            if status == 200 and isinstance(answer, dict) and answer.get("leader"):
                return
            await trio.sleep(0.1)
    raise BzzzError(f"{target.api}: no coordinator known within {timeout:g}s; is the network "
                    "formed? (bzzz-edge coordinator)")


def _implementation(infos: list[dict[str, Any]]) -> tuple[str, dict[str, str]]:
    impls = infos[0].get("implementations") or {}
    kinds = {v for info in infos for v in (info.get("implementations") or {}).values()}
    if kinds == {"compiled"}:
        return "compiled", impls
    if kinds == {"pure"}:
        return "pure", impls
    return "mixed", impls


def _header(args: argparse.Namespace, infos: list[dict[str, Any]]) -> dict[str, Any]:
    implementation, impls = _implementation(infos)
    versions = sorted({str(i.get("version")) for i in infos})
    return {"version": __version__, "node_versions": versions,
            "implementation": implementation, "implementations": impls,
            "pure_forced": os.environ.get("BZZZ_EDGE_PURE") == "1",
            "signatures": signatures.BACKEND,  # as the nodes this starts check (same env)
            "python": platform.python_version(), "platform": platform.platform(),
            "machine": platform.machine(), "cpus": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "nodes": len(infos), "rounds": args.rounds, "warmup": args.warmup,
            "modes": args.chosen_modes}


async def _idle(args: argparse.Namespace, targets: list[Any], infos: list[dict[str, Any]],
                progress: _Progress) -> dict[str, Any]:
    import psutil

    from ..bench import idle_usage

    pids = {t.name: t.pid for t in targets if _local_node(t, psutil)}
    if not pids:
        return {"skipped": "the node's process is not on this machine"}
    import trio

    # The rounds' echoes (gossip announcing recent messages for a few heartbeats, the signed
    # logs' replication, the task store's writes) die down first: idle means nothing to do.
    progress.note(f"quiet for {_SETTLE_S:g}s, then idle for {args.idle_seconds:g}s")
    await trio.sleep(_SETTLE_S)
    usage = await idle_usage(pids, args.idle_seconds)
    cpus, rss = [u.cpu_percent for u in usage], [u.rss_mb for u in usage]
    return {"seconds": args.idle_seconds, "after_quiet_seconds": _SETTLE_S,
            "per_node": [{"node": u.name, "pid": u.pid, "cpu_percent": round(u.cpu_percent, 2),
                          "rss_mb": round(u.rss_mb, 1)} for u in usage],
            "cpu_percent_mean": round(sum(cpus) / len(cpus), 2),
            "cpu_percent_max": round(max(cpus), 2),
            "rss_mb_mean": round(sum(rss) / len(rss), 1), "rss_mb_max": round(max(rss), 1),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def _local_node(target: Any, psutil: Any) -> bool:
    """Whether ``target``'s process runs on this machine (a loopback API, and its PID is a
    bzzz-edge process here)."""
    from urllib.parse import urlsplit

    if not isinstance(target.pid, int) or \
            urlsplit(target.api).hostname not in ("127.0.0.1", "localhost", "::1"):
        return False
    try:
        command = " ".join(psutil.Process(target.pid).cmdline())
    except psutil.Error:
        return False
    return "bzzz" in command


async def _failover(rounds: Any, cluster: Any, progress: _Progress) -> dict[str, Any]:
    import signal

    from ..bench import summarize

    progress.note("failover: kill -9 of the coordinator")

    def kill(target: Any) -> None:
        node = cluster.nodes[target.index]
        node.process.send_signal(signal.SIGKILL)

    result = await rounds.failover(kill)
    leader = await rounds.leader()
    killed = next(t for t in rounds.targets if not t.alive)
    return {**summarize([result.total_ms]).as_dict(), "failover_ms": round(result.total_ms, 1),
            "killed": killed.name, "new_coordinator": leader.name if leader else None,
            "claimants": result.claimants, "retries": result.retries}


def _emit(args: argparse.Namespace, report: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for line in render(report):
        print(line)


def render(report: dict[str, Any]) -> list[str]:
    """The text report."""
    from ..bench import histogram

    load = " ".join(f"{x:.2f}" for x in report["load_average"])
    impls = ", ".join(f"{k} {v}" for k, v in report["implementations"].items())
    lines = [f"bzzz-edge bench: {report['nodes']} nodes ({report['cluster']}), "
             f"{report['rounds']} rounds per mode after {report['warmup']} warm-up",
             f"  version         bzzz-edge {report['version']} (nodes: "
             f"{', '.join(report['node_versions'])}), Python {report['python']}",
             f"  implementation  {report['implementation']} ({impls})"
             f"{'; BZZZ_EDGE_PURE=1 here' if report.get('pure_forced') else ''}; Ed25519 "
             f"checks {report.get('signatures', '?')}",
             f"  platform        {report['platform']}, {report['cpus']} CPUs, load average "
             f"{load} at start",
             "  a round         announce, claim settled, winner known on every node (its "
             "bzzz/coordination/v1 event stream delivered the claim)"]
    for mode in ("rest", "contested"):
        if mode not in report:
            continue
        r = report[mode]
        lines += ["", f"{_TITLES[mode]}, {r['claimants']} claimant(s)",
                  f"  p50 {r['p50_ms']:.1f} ms   p90 {r['p90_ms']:.1f} ms   "
                  f"p99 {r['p99_ms']:.1f} ms   max {r['max_ms']:.1f} ms   "
                  f"(min {r['min_ms']:.1f}, mean {r['mean_ms']:.1f})",
                  f"  medians from the announce: announced {r['announce_p50_ms']:.1f} ms, "
                  f"claim settled {r['settled_p50_ms']:.1f} ms, known everywhere "
                  f"{r['known_p50_ms']:.1f} ms"]
        lines += [f"  {h}" for h in histogram(r["samples_ms"])]
        if r["lagging_rounds"]:
            lines.append(f"  in {r['lagging_rounds']} round(s) a node's API did not show the "
                         "owner yet when its event had arrived")
    if "failover" in report:
        f = report["failover"]
        lines += ["", _TITLES["failover"],
                  f"  failover {f['failover_ms']:.1f} ms: {f['killed']} killed, "
                  f"{f['new_coordinator'] or 'no node'} coordinates now, {f['claimants']} "
                  f"claimants, {f['retries']} claim(s) retried"]
    idle = report.get("idle")
    if idle and "per_node" in idle:
        lines += ["", f"idle, over {idle['seconds']:g}s after {idle['after_quiet_seconds']:g}s "
                  f"of quiet: CPU mean {idle['cpu_percent_mean']:.2f}% "
                  f"max {idle['cpu_percent_max']:.2f}% of one core; RSS mean "
                  f"{idle['rss_mb_mean']:.1f} MB max {idle['rss_mb_max']:.1f} MB"]
        lines += [f"  {n['node']:<7} pid {n['pid']:<8} CPU {n['cpu_percent']:5.2f}%  "
                  f"RSS {n['rss_mb']:6.1f} MB" for n in idle["per_node"]]
    elif idle:
        lines += ["", f"idle: skipped ({idle['skipped']})"]
    return lines


class _Progress:
    """A progress bar on stderr while rounds run (rich; nothing when stderr is no terminal)."""

    def __init__(self, quiet: bool) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        console = Console(stderr=True)
        self.enabled = console.is_terminal
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                  MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                                  transient=True, refresh_per_second=4)
        self._task: Any = None
        self._advance: Callable[[], None] = lambda: None

    def __enter__(self) -> _Progress:
        if self.enabled:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._progress.stop()

    def note(self, text: str) -> None:
        self.stop()
        if self.enabled:
            self._task = self._progress.add_task(text, total=None)

    def start(self, text: str, total: int) -> None:
        self.stop()
        if self.enabled:
            self._task = self._progress.add_task(text, total=total)

    def advance(self) -> None:
        if self._task is not None:
            self._progress.advance(self._task)

    def stop(self) -> None:
        if self._task is not None:
            self._progress.remove_task(self._task)
            self._task = None
