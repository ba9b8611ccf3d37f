"""A real ``bzzz-edge run`` process: readiness, signals, shutdown phases, deadlines, reload."""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import lmdb
import msgpack
import pytest

from bzzz_edge import observe
from bzzz_edge.lifecycle.shutdown import ExitCode

pytestmark = [pytest.mark.slow, pytest.mark.lone_node]

PHASES = ["pre-shutdown", "shutdown", "post-shutdown", "cleanup"]


def _phase_order(messages: list[str]) -> list[str]:
    return [m.split()[2] for m in messages if m.startswith("shutdown phase ")]


def _clean_shutdown_recorded(data_dir: Path) -> bool:
    env = lmdb.open(str(data_dir / "store"), max_dbs=32, readonly=True, lock=False)
    try:
        with env.begin(db=env.open_db(b"meta", create=False)) as txn:
            return msgpack.unpackb(txn.get(b"clean_shutdown"))
    finally:
        env.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT])
def test_stop_signal_shuts_down_cleanly_in_phase_order(initialised_node, spawn_node, signum):
    node = spawn_node(initialised_node, "--set", "shutdown.deadline=5")
    node.wait_ready()
    assert (initialised_node / "node.json").exists()
    node.signal(signum)
    # OK, not DEADLINE: everything stopped within the 5 s deadline, by the node's own clock.
    assert node.wait_exit(timeout=10) == ExitCode.OK
    messages = node.messages()
    assert f"shutdown requested: received {signal.Signals(signum).name}" in messages
    assert _phase_order(messages) == PHASES
    assert messages.index("storage closed") > messages.index(
        "shutdown phase post-shutdown (1 steps)")
    node.wait_for_notify("STOPPING=1", timeout=1)
    assert _clean_shutdown_recorded(initialised_node)
    assert not (initialised_node / "node.json").exists()


def test_kill_9_leaves_unclean_marker_that_next_start_reports(initialised_node, spawn_node):
    node = spawn_node(initialised_node)
    node.wait_ready()
    node.signal(signal.SIGKILL)
    node.wait_exit()
    assert not _clean_shutdown_recorded(initialised_node)
    again = spawn_node(initialised_node)
    again.wait_ready()
    again.wait_for_log("previous run did not shut down cleanly")
    again.signal(signal.SIGTERM)
    assert again.wait_exit() == ExitCode.OK


def test_hanging_component_is_cut_off_and_shutdown_goes_on(initialised_node, spawn_node):
    node = spawn_node(initialised_node, "--set", "shutdown.deadline=10",
                      script=["hanging_node.py", "cancellable", "0.5"])
    node.wait_ready()
    node.signal(signal.SIGTERM)
    assert node.wait_exit(timeout=10) == ExitCode.UNCLEAN
    messages = node.messages()
    assert "component hanging-component did not stop within 0.5s; cut off" in messages
    assert _phase_order(messages) == PHASES
    assert "storage closed" in messages
    assert _clean_shutdown_recorded(initialised_node)


def test_blocked_event_loop_still_exits_at_hard_deadline(initialised_node, spawn_node):
    node = spawn_node(initialised_node, "--set", "shutdown.deadline=1.5",
                      script=["hanging_node.py", "blocking", "30"])
    node.wait_ready()
    sent = time.monotonic()
    node.signal(signal.SIGTERM)
    assert node.wait_exit(timeout=10) == ExitCode.DEADLINE
    assert time.monotonic() - sent > 1.4  # not before the deadline (later is the machine's load)
    assert any("shutdown deadline of 1.5s passed" in m for m in node.messages())


def test_second_signal_forces_exit(initialised_node, spawn_node):
    node = spawn_node(initialised_node, "--set", "shutdown.deadline=60",
                      script=["hanging_node.py", "cancellable", "60"])
    node.wait_ready()
    node.signal(signal.SIGTERM)
    node.wait_for_log(r"^shutdown phase shutdown ")
    node.signal(signal.SIGINT)
    assert node.wait_exit(timeout=10) == ExitCode.FORCED
    assert any("second signal SIGINT during shutdown: forcing exit" in m for m in node.messages())


def test_sighup_reloads_log_level(initialised_node, spawn_node):
    config_file = initialised_node / "config.toml"
    node = spawn_node(initialised_node, "--set", "health.interval=0.2")
    node.wait_ready()
    assert not any(json.loads(line)["level"] == "debug" for line in node.lines)
    config_file.write_text('[log]\nlevel = "debug"\n')
    node.signal(signal.SIGHUP)
    node.wait_for_log("config reloaded: log.level changed from info to debug")
    node.signal(signal.SIGTERM)
    assert node.wait_exit() == ExitCode.OK
    levels = [json.loads(line)["level"] for line in node.lines]
    assert "debug" in levels  # e.g. "component api stopped in ..." is logged at debug


def test_sighup_with_broken_config_keeps_running(initialised_node, spawn_node):
    node = spawn_node(initialised_node)
    node.wait_ready()
    (initialised_node / "config.toml").write_text('[log]\nlevel = "loud"\n')
    node.signal(signal.SIGHUP)
    message = node.wait_for_log("config reload failed")
    assert "log.level" in message and "'loud'" in message
    assert node.proc.poll() is None
    node.signal(signal.SIGTERM)
    assert node.wait_exit() == ExitCode.OK


def test_failing_critical_check_stops_node_with_nonzero_code(initialised_node, spawn_node):
    node = spawn_node(initialised_node, "--set", "health.disk_min_free_mb=1099511627776",
                      "--set", "health.grace_period=0.3", "--set", "health.interval=0.1")
    assert node.wait_exit(timeout=20) == ExitCode.UNHEALTHY
    messages = node.messages()
    assert any(m.startswith("shutdown requested: critical health check disk failing")
               for m in messages)
    assert "storage closed" in messages


def test_world_readable_identity_key_is_refused(initialised_node, spawn_node):
    (initialised_node / "identity.key").chmod(0o644)
    node = spawn_node(initialised_node)
    assert node.wait_exit() == ExitCode.USAGE
    assert not (initialised_node / "store").exists()


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_http_health_and_metrics_of_running_node(initialised_node, spawn_node):
    node = spawn_node(initialised_node)
    api = node.wait_ready()
    assert api.startswith("http://127.0.0.1:")
    assert _get(api + "/health/live")[0] == 200
    assert json.loads(_get(api + "/health/ready")[1]) == {"ready": True}
    code, body = _get(api + "/health/checks")
    checks = json.loads(body)["checks"]
    assert code == 200 and set(checks) == {"memory", "disk", "p2p", "storage", "dht",
                                          "coordination"}
    for check in checks.values():
        assert check["status"] == "ok" and check["last_run"] and check["duration_ms"] >= 0
    code, body = _get(api + "/metrics")
    text = body.decode()
    assert code == 200
    assert "process_resident_memory_bytes" in text
    assert 'bzzz_edge_health_check_ok{check="disk",critical="true"} 1.0' in text
    # Every counter of the built-in families is there from start (dashboards, alerts).
    for family, events in (("net_events", observe._NET_EVENTS),
                           ("membership_events", observe._MEMBERSHIP_EVENTS),
                           ("gossip_messages", observe._GOSSIP_EVENTS),
                           ("discovery_events", observe._DISCOVERY_EVENTS)):
        for event in events:
            assert f'bzzz_edge_{family}_total{{event="{event}"}}' in text, (family, event)
    code, body = _get(api + "/no/such/thing")
    assert code == 404 and json.loads(body)["path"] == "/no/such/thing"
    node.signal(signal.SIGTERM)
    assert node.wait_exit() == ExitCode.OK


def test_api_token_is_required_and_never_logged(initialised_node, spawn_node):
    token = "s3cret-token-abcdef"
    node = spawn_node(initialised_node, "--set", f"api.token={token}", "--log-level", "debug")
    api = node.wait_ready()
    assert _get(api + "/health")[0] == 401
    assert _get(api + "/health", "wrong-token")[0] == 401
    assert _get(api + "/health", token)[0] == 200
    node.signal(signal.SIGTERM)
    assert node.wait_exit() == ExitCode.OK
    network_key = (initialised_node / "network.key").read_text().strip()
    everything = "\n".join(node.lines)
    assert token not in everything and network_key not in everything


def test_watchdog_pings_systemd_while_healthy(initialised_node, spawn_node):
    node = spawn_node(initialised_node, env={"WATCHDOG_USEC": "200000"})
    node.wait_ready()
    node.wait_for_notify("WATCHDOG=1", timeout=10)
    node.signal(signal.SIGTERM)
    assert node.wait_exit() == ExitCode.OK
