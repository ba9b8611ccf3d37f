"""Say why: readiness logged when it is true, shutdown reasons at error level, current peer
counts in `status`, `status --watch`, and `cluster` cleaning up after itself."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bzzz_edge.lifecycle.shutdown import ExitCode

pytestmark = pytest.mark.slow

_READY = r"^node \S+ ready (\d+\.\d+)s after process start"


def _ready_status(api: str) -> int:
    try:
        with urllib.request.urlopen(api + "/health/ready", timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_ready_is_logged_only_once_min_peers_are_there(node_pair, spawn_node):
    a_dir, b_dir = node_pair
    began = time.monotonic()
    a = spawn_node(a_dir, "--set", "health.min_peers=1")
    a.wait_ready()  # READY=1 to systemd: the API answers
    assert _ready_status(a.api) == 503
    assert not any(re.search(_READY, m) for m in a.messages())
    b = spawn_node(b_dir, "--set", f"network.bootstrap_peers=127.0.0.1:{a.peer_port}")
    b.wait_ready()
    line = a.wait_for_log(_READY)
    observed = time.monotonic() - began
    assert _ready_status(a.api) == 200
    # Measured from the process start in clock ticks: never more than the test itself saw
    # (psutil's whole-second start time could add up to a second).
    match = re.search(_READY, line)
    assert match is not None and 0 < float(match.group(1)) <= observed + 0.05
    for node in (a, b):
        node.signal(signal.SIGTERM)
        assert node.wait_exit() == ExitCode.OK


def test_critical_shutdown_reason_is_logged_at_error_level(initialised_node, spawn_node):
    node = spawn_node(initialised_node, "--set", "health.disk_min_free_mb=1099511627776",
                      "--set", "health.grace_period=0.3", "--set", "health.interval=0.1")
    assert node.wait_exit(timeout=20) == ExitCode.UNHEALTHY
    entries = [json.loads(line) for line in node.lines if line.startswith("{")]
    reason = next(e for e in entries if e["msg"].startswith("shutdown requested: critical"))
    assert reason["level"] == "error" and "disk" in reason["msg"]


def test_status_shows_current_peer_counts(node_pair, spawn_node, cli):
    a_dir, b_dir = node_pair
    a = spawn_node(a_dir, "--set", "health.interval=3600")  # the p2p check will not rerun
    a.wait_ready()
    b = spawn_node(b_dir, "--set", f"network.bootstrap_peers=127.0.0.1:{a.peer_port}")
    b.wait_ready()
    a.wait_for_log(r"^connected to ")
    a.wait_for_log(r"^peer \S+ \S+ -> alive")
    result = cli("status", "--api", a.api)
    assert result.returncode == 0, result.stderr
    assert "peers     1 alive, 1 connected" in result.stdout, result.stdout
    for node in (a, b):
        node.signal(signal.SIGTERM)
        assert node.wait_exit() == ExitCode.OK


def test_status_watch_repeats_until_ctrl_c(initialised_node, spawn_node):
    node = spawn_node(initialised_node)
    node.wait_ready()
    # Ctrl-C reaches a foreground command whose SIGINT is at its default, even when this
    # suite itself runs as a background job (where the shell sets SIGINT to ignored).
    watch = subprocess.Popen([sys.executable, "-m", "bzzz_edge", "status", "--watch", "0.1",
                              "--api", node.api], stdout=subprocess.PIPE, text=True,
                             preexec_fn=_default_sigint)
    assert watch.stdout is not None
    blocks = 0
    for line in watch.stdout:
        blocks += line.startswith("node ")
        if blocks == 3:
            break
    watch.send_signal(signal.SIGINT)
    assert watch.wait(15) == 0
    node.signal(signal.SIGTERM)
    assert node.wait_exit() == ExitCode.OK


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # what a shell does for a background job `&`


@pytest.mark.parametrize("keep", [False, True])
def test_cluster_stops_on_sigint_in_background_and_removes_its_temp_dir(tmp_path, keep):
    extra = ["--dir", str(tmp_path / "kept")] if keep else []
    proc = subprocess.Popen([sys.executable, "-m", "bzzz_edge", "cluster", "--nodes", "2", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_ignore_sigint)
    assert proc.stdout is not None
    base = None
    for line in proc.stdout:
        found = re.search(r"data and logs in (\S+),", line)
        base = Path(found.group(1)) if found else base
        if line.startswith("Ctrl-C stops them all."):
            break
    assert base is not None and base.is_dir()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, (out, err)
    assert "exit codes: 0 0" in out
    assert base.exists() == keep
