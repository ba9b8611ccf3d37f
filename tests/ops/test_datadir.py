"""One node per data dir, and a data dir that can be trusted (OpenSSH's StrictModes rules)."""

from __future__ import annotations

import json
import os
import signal
import stat
import urllib.request

import pytest

from bzzz_edge.cli import main
from bzzz_edge.errors import BzzzError
from bzzz_edge.identity import Identity
from bzzz_edge.lifecycle.datadir import DataDirLock, create_private
from bzzz_edge.lifecycle.shutdown import ExitCode

pytestmark = [pytest.mark.slow, pytest.mark.lone_node]

OTHER_UID = 4242  # no need for a passwd entry: ownership is what is checked


@pytest.mark.parametrize("fresh", ["missing", "empty"])
def test_run_init_on_a_fresh_data_dir_creates_the_node_and_runs_it(tmp_path, spawn_node, fresh):
    # What the systemd unit does on its first start: StateDirectory gives an empty 0700 dir
    # ("empty"); a user starting by hand may name one that does not exist yet ("missing").
    data_dir = tmp_path / "state" / "node"
    data_dir.parent.mkdir()  # the notify socket goes there
    if fresh == "empty":
        data_dir.mkdir(mode=0o700)
    node = spawn_node(data_dir, "--init")
    api = node.wait_ready()
    identity = Identity.load(data_dir / "identity.key")
    node.wait_for_log(rf"^initialised a new node {identity.display_id} in ")
    with urllib.request.urlopen(api + "/api/v1/node", timeout=5) as response:
        assert json.loads(response.read())["node_id"] == identity.display_id
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    for name in ("identity.key", "network.key", "config.toml"):
        assert stat.S_IMODE((data_dir / name).stat().st_mode) == 0o600, name
    node.signal(signal.SIGTERM)
    assert node.wait_exit() == ExitCode.OK
    # The next start (systemd restarting it) keeps that identity and initialises nothing.
    network_key = (data_dir / "network.key").read_bytes()
    again = spawn_node(data_dir, "--init")
    with urllib.request.urlopen(again.wait_ready() + "/api/v1/node", timeout=5) as response:
        assert json.loads(response.read())["node_id"] == identity.display_id
    again.signal(signal.SIGTERM)
    assert again.wait_exit() == ExitCode.OK
    assert not any("initialised a new node" in m for m in again.messages())
    assert (data_dir / "network.key").read_bytes() == network_key


def test_second_run_on_same_data_dir_exits_2_naming_the_holder(
        initialised_node, spawn_node, cli, one_line_error):
    first = spawn_node(initialised_node)
    first.wait_ready()
    second = cli("run", "--data-dir", str(initialised_node), "--listen", "127.0.0.1:0",
                 "--api-listen", "127.0.0.1:0", "--set", "network.mdns=false")
    one_line_error(second, f"PID {first.proc.pid}", str(initialised_node))
    # The first node is untouched: its runtime file still names it, and it stops cleanly.
    assert json.loads((initialised_node / "node.json").read_text())["pid"] == first.proc.pid
    first.signal(signal.SIGTERM)
    assert first.wait_exit() == ExitCode.OK


def test_restart_after_kill_9_is_not_blocked_by_a_stale_lock(initialised_node, spawn_node):
    node = spawn_node(initialised_node)
    node.wait_ready()
    node.signal(signal.SIGKILL)
    node.wait_exit()
    assert (initialised_node / "node.lock").exists()  # the file stays; the lock went with it
    again = spawn_node(initialised_node)
    again.wait_ready()
    again.signal(signal.SIGTERM)
    assert again.wait_exit() == ExitCode.OK


def test_init_force_is_refused_while_the_node_runs(
        initialised_node, spawn_node, cli, one_line_error):
    key_before = (initialised_node / "identity.key").read_bytes()
    node = spawn_node(initialised_node)
    node.wait_ready()
    result = cli("init", "--force", "--data-dir", str(initialised_node))
    one_line_error(result, "replace the identity", f"PID {node.proc.pid}")
    assert (initialised_node / "identity.key").read_bytes() == key_before
    node.signal(signal.SIGTERM)
    assert node.wait_exit() == ExitCode.OK
    assert main(["init", "--force", "--data-dir", str(initialised_node)]) == 0  # now it may


def test_lock_is_exclusive_and_released(tmp_path):
    held = DataDirLock.acquire(tmp_path)
    with pytest.raises(BzzzError, match=f"PID {os.getpid()}"):
        DataDirLock.acquire(tmp_path)
    held.release()
    DataDirLock.acquire(tmp_path).release()


def test_data_dir_writable_by_others_is_refused(initialised_node, cli, one_line_error):
    initialised_node.chmod(0o777)
    for command in (["run"], ["init", "--force"]):
        result = cli(*command, "--data-dir", str(initialised_node))
        one_line_error(result, "writable by others", f"chmod 700 {initialised_node}")


def test_data_dir_owned_by_another_user_is_refused(initialised_node, cli, one_line_error):
    os.chown(initialised_node, OTHER_UID, OTHER_UID)
    result = cli("run", "--data-dir", str(initialised_node))
    one_line_error(result, f"owned by uid {OTHER_UID}", "chown")
    assert not (initialised_node / "store").exists()


@pytest.mark.parametrize("name", ["identity.key", "network.key"])
def test_key_file_owned_by_another_user_is_refused(initialised_node, cli, one_line_error, name):
    os.chown(initialised_node / name, OTHER_UID, OTHER_UID)
    result = cli("run", "--data-dir", str(initialised_node), "--listen", "127.0.0.1:0",
                 "--api-listen", "127.0.0.1:0", "--set", "network.mdns=false")
    one_line_error(result, name, f"owned by uid {OTHER_UID}")
    assert not (initialised_node / "store").exists()


def test_dangling_config_symlink_is_not_written_through(tmp_path, cli, one_line_error):
    data_dir = tmp_path / "node"
    data_dir.mkdir(mode=0o700)
    target = tmp_path / "elsewhere" / "planted.toml"
    target.parent.mkdir()
    (data_dir / "config.toml").symlink_to(target)
    result = cli("init", "--data-dir", str(data_dir))
    one_line_error(result, "config.toml", "symlink")
    assert not target.exists()


def test_files_the_node_writes_are_0600(initialised_node, spawn_node):
    assert stat.S_IMODE((initialised_node / "config.toml").stat().st_mode) == 0o600
    node = spawn_node(initialised_node)
    node.wait_ready()
    for name in ("node.json", "node.lock"):
        assert stat.S_IMODE((initialised_node / name).stat().st_mode) == 0o600, name
    node.signal(signal.SIGTERM)
    assert node.wait_exit() == ExitCode.OK


def test_create_private_refuses_symlinks_and_replaces_atomically(tmp_path):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "target")
    with pytest.raises(BzzzError, match="symlink"):
        create_private(link, b"x")
    create_private(link, b"y", replace=True)  # replaces the link itself, not its target
    assert not (tmp_path / "target").exists() and not link.is_symlink()
    assert link.read_bytes() == b"y"


def test_api_token_file_is_used_and_must_be_private(
        initialised_node, spawn_node, cli, one_line_error):
    token_file = initialised_node / "api.token"
    token_file.write_text("file-token-0123456789\n")
    token_file.chmod(0o600)
    node = spawn_node(initialised_node, "--set", f"api.token_file={token_file}")
    node.wait_ready()
    assert "file-token-0123456789" not in "\n".join(node.lines)
    status = cli("status", "--data-dir", str(initialised_node), "--set",
                 f"api.token_file={token_file}")
    assert status.returncode == 0, status.stderr
    one_line_error(cli("status", "--data-dir", str(initialised_node)), "needs an API token")
    token_file.chmod(0o644)
    one_line_error(cli("status", "--data-dir", str(initialised_node), "--set",
                       f"api.token_file={token_file}"), "api.token_file", "chmod 600")
    node.signal(signal.SIGTERM)
    assert node.wait_exit() == ExitCode.OK


def test_root_prepares_the_service_users_data_dir_and_hands_the_files_over(tmp_path, cli):
    # As the README's "join an existing network" under systemd: the state dir belongs to the
    # service's dynamic user; `sudo bzzz-edge init --force --network-key-file F` writes there.
    if os.geteuid() != 0:
        pytest.skip("needs root, as `sudo bzzz-edge init` has")
    data_dir = tmp_path / "state"
    data_dir.mkdir(mode=0o700)
    os.chown(data_dir, OTHER_UID, OTHER_UID)
    key = tmp_path / "network.key"
    key.write_text("ab" * 32 + "\n")
    result = cli("init", "--force", "--data-dir", str(data_dir), "--network-key-file", str(key))
    assert result.returncode == 0, result.stderr
    for name in ("identity.key", "network.key", "config.toml", "node.lock"):
        st = (data_dir / name).stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (OTHER_UID, 0o600), name
    assert (data_dir / "network.key").read_text() == key.read_text()
