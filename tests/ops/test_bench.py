"""``bzzz-edge bench``: end to end on a small local cluster and against a running node, its
JSON and text output, and clear errors for bad arguments and a cluster that cannot form."""

from __future__ import annotations

import json

import pytest

from bzzz_edge import _native
from bzzz_edge.bench import form_cluster
from bzzz_edge.cluster import LocalCluster
from bzzz_edge.errors import BzzzError

_MODE_KEYS = ("rounds", "p50_ms", "p90_ms", "p99_ms", "max_ms")


def _implementation() -> str:
    kinds = set(_native.implementations().values())
    return "compiled" if kinds == {"compiled"} else "pure" if kinds == {"pure"} else "mixed"


@pytest.mark.parametrize("args, fragment", [
    (["--rounds", "0"], "--rounds 0"),
    (["--warmup", "-1"], "--warmup -1"),
    (["--nodes", "0"], "--nodes 0"),
    (["--modes", "rest,sideways"], "choose among rest, contested, failover"),
    (["--nodes", "2", "--modes", "failover"], "at least 3 nodes"),
    (["--timeout", "0"], "--timeout"),
    (["--nodes", "3", "--api", "http://127.0.0.1:9"], "give one or the other"),
    (["--api", "http://127.0.0.1:9", "--modes", "failover"], "only on a local cluster"),
])
def test_bad_arguments_are_one_line(cli, one_line_error, args, fragment):
    one_line_error(cli("bench", *args), fragment)


def test_no_node_at_the_data_dir_is_one_line(cli, one_line_error, tmp_path):
    one_line_error(cli("bench", "--data-dir", str(tmp_path / "nothing")), "no running node found")


def test_no_node_at_the_api_is_one_line(cli, one_line_error):
    one_line_error(cli("bench", "--api", "http://127.0.0.1:9"), "cannot reach the node's API")


@pytest.mark.slow
def test_a_cluster_that_cannot_form_names_the_node_and_shows_its_log(tmp_path):
    with pytest.raises(BzzzError) as caught:
        form_cluster(tmp_path, 3, timeout=30, extra_args=["--set", "coordination.voters=-1"])
    text = str(caught.value)
    assert "the cluster failed to form" in text and "node0" in text
    assert "node0's last log lines" in text and "voters" in text.split("last log lines")[1]


@pytest.mark.slow
def test_bench_on_a_local_cluster_emits_json_with_every_mode(cli):
    result = cli("bench", "--nodes", "3", "--rounds", "4", "--warmup", "1", "--idle-seconds",
                 "0.5", "--json", timeout=240)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["nodes"] == 3 and report["rounds"] == 4 and report["cluster"] == "local"
    assert report["implementation"] == _implementation()
    assert report["version"] and report["platform"]
    for mode, claimants in (("rest", 1), ("contested", 3)):
        figures = report[mode]
        assert all(isinstance(figures[k], int | float) for k in _MODE_KEYS)
        assert figures["rounds"] == 4 and len(figures["samples_ms"]) == 4
        assert figures["claimants"] == claimants
        assert 0 < figures["p50_ms"] <= figures["p90_ms"] <= figures["p99_ms"] <= \
            figures["max_ms"]
    failover = report["failover"]
    assert failover["failover_ms"] > 0 and failover["claimants"] == 2
    assert failover["killed"] != failover["new_coordinator"] and failover["new_coordinator"]
    assert [n["node"] for n in report["idle"]["per_node"]] == ["node0", "node1", "node2"]
    assert all(n["rss_mb"] > 10 for n in report["idle"]["per_node"])


@pytest.mark.slow
@pytest.mark.pure_nodes
def test_bench_text_output_has_percentiles_histogram_and_implementation(cli):
    result = cli("bench", "--nodes", "3", "--rounds", "3", "--warmup", "0", "--modes",
                 "contested", "--idle-seconds", "0", timeout=240)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "bzzz-edge bench: 3 nodes (local)" in out
    assert f"implementation  {_implementation()}" in out
    assert "platform" in out and "version" in out
    line = next(li for li in out.splitlines() if li.strip().startswith("p50"))
    assert all(f"{word} " in line for word in ("p50", "p90", "p99", "max"))
    assert "│" in out and "█" in out  # the histogram
    assert "at rest" not in out and "failover" not in out and "idle" not in out


@pytest.mark.slow
def test_bench_against_a_running_node_through_its_data_dir(tmp_path, cli):
    with LocalCluster(tmp_path / "net", 1) as cluster:
        cluster.start()
        node = cluster.nodes[0]
        result = cli("bench", "--data-dir", str(node.data_dir), "--rounds", "3", "--warmup",
                     "1", "--idle-seconds", "0.5", "--json", timeout=120)
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["nodes"] == 1 and report["cluster"] == "network"
        assert report["rest"]["rounds"] == 3 and "contested" not in report
        assert report["idle"]["per_node"][0]["pid"] == node.process.pid
        tasks = node.get("/api/v1/tasks")["tasks"]
        assert len(tasks) == 4 and {t["state"] for t in tasks} == {"completed"}


def _report() -> dict:
    samples = [5.0, 6.0, 7.0, 40.0]
    mode = {"rounds": 4, "p50_ms": 6.0, "p90_ms": 40.0, "p99_ms": 40.0, "max_ms": 40.0,
            "min_ms": 5.0, "mean_ms": 14.5, "samples_ms": samples, "lagging_rounds": 1,
            "claimants": 3, "announce_p50_ms": 2.0, "settled_p50_ms": 5.0,
            "known_p50_ms": 6.0, "claim_p50_ms": 4.0, "claim_p99_ms": 38.0}
    return {"version": "9.9", "node_versions": ["9.9"], "implementation": "pure",
            "implementations": {"ucxl": "pure"}, "pure_forced": True, "python": "3.11.0",
            "platform": "Linux-x", "machine": "x86_64", "cpus": 2,
            "load_average": [1.0, 2.0, 3.0], "nodes": 3, "rounds": 4, "warmup": 0,
            "modes": ["rest", "contested", "failover"], "cluster": "local",
            "rest": mode, "contested": mode,
            "failover": {"failover_ms": 812.5, "killed": "node0", "new_coordinator": "node2",
                         "claimants": 2, "retries": 3},
            "idle": {"seconds": 5.0, "after_quiet_seconds": 5.0, "cpu_percent_mean": 0.5,
                     "cpu_percent_max": 0.7, "rss_mb_mean": 50.0, "rss_mb_max": 51.0,
                     "per_node": [{"node": "node0", "pid": 1, "cpu_percent": 0.7,
                                   "rss_mb": 51.0}]}}


def test_text_report_says_what_a_bug_report_needs():
    from bzzz_edge.cli._bench import render

    text = "\n".join(render(_report()))
    assert "bzzz-edge bench: 3 nodes (local), 4 rounds per mode" in text
    assert "implementation  pure (ucxl pure); BZZZ_EDGE_PURE=1 here" in text
    assert "bzzz-edge 9.9" in text and "Linux-x, 2 CPUs, load average 1.00 2.00 3.00" in text
    assert text.count("p50 6.0 ms   p90 40.0 ms   p99 40.0 ms   max 40.0 ms") == 2
    assert "failover 812.5 ms: node0 killed, node2 coordinates now" in text
    assert "CPU mean 0.50% max 0.70% of one core; RSS mean 50.0 MB" in text
    assert "node0   pid 1" in text
    assert text.count("did not show the owner yet") == 2


def test_an_error_inside_the_rounds_nursery_is_raised_as_itself():
    import trio

    from bzzz_edge.cli._bench import _trio_run

    async def fails() -> None:
        async def boom() -> None:
            raise BzzzError("node3: claim refused")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            nursery.start_soon(boom)

    with pytest.raises(BzzzError, match="node3: claim refused"):
        _trio_run(fails)
