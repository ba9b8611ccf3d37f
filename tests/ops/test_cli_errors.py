"""Every user error found by trying the CLI is one line on stderr and exit code 2.

Each case is reproduced as it was found, as a real ``bzzz-edge`` process. "Read-only" and
"unreadable" cases run as root without the capabilities that override file modes (setpriv).
"""

from __future__ import annotations

import signal

import pytest

from bzzz_edge.lifecycle.shutdown import ExitCode

pytestmark = [pytest.mark.slow, pytest.mark.lone_node]


def test_init_on_read_only_dir(tmp_path, cli, one_line_error):
    data_dir = tmp_path / "node"
    data_dir.mkdir(mode=0o500)
    one_line_error(cli("init", "--data-dir", str(data_dir), no_dac=True),
                   str(data_dir), "Permission denied")
    assert list(data_dir.iterdir()) == []


def test_init_where_the_data_dir_cannot_be_created(tmp_path, cli, one_line_error):
    parent = tmp_path / "ro"
    parent.mkdir(mode=0o555)
    one_line_error(cli("init", "--data-dir", str(parent / "node"), no_dac=True),
                   "cannot create data dir", "Permission denied")


def test_run_init_where_the_data_dir_is_a_file(tmp_path, cli, one_line_error):
    data_dir = tmp_path / "node"
    data_dir.write_text("not a directory")
    one_line_error(cli("run", "--init", "--data-dir", str(data_dir)), "not a directory")


def test_run_init_where_the_data_dir_cannot_be_created(tmp_path, cli, one_line_error):
    parent = tmp_path / "ro"
    parent.mkdir(mode=0o555)
    one_line_error(cli("run", "--init", "--data-dir", str(parent / "node"), no_dac=True),
                   "cannot create data dir")


def test_run_on_an_unreadable_data_dir(initialised_node, cli, one_line_error):
    initialised_node.chmod(0o000)
    try:
        one_line_error(cli("run", "--data-dir", str(initialised_node), no_dac=True),
                       str(initialised_node), "Permission denied")
    finally:
        initialised_node.chmod(0o700)


def test_run_without_init(tmp_path, cli, one_line_error):
    one_line_error(cli("run", "--data-dir", str(tmp_path / "missing")), "bzzz-edge init")


def test_install_service_into_a_missing_unit_dir(tmp_path, cli, one_line_error):
    one_line_error(cli("install-service", "--unit-dir", str(tmp_path / "nope")),
                   "does not exist")


def test_install_service_without_root(tmp_path, cli, one_line_error):
    unit_dir = tmp_path / "units"
    unit_dir.mkdir(mode=0o755)
    unit_dir.chmod(0o555)
    one_line_error(cli("install-service", "--unit-dir", str(unit_dir), no_dac=True),
                   "permission denied", "run it as root")
    assert list(unit_dir.iterdir()) == []


def test_uninstall_service_without_a_unit(tmp_path, cli, one_line_error):
    one_line_error(cli("uninstall-service", "--unit-dir", str(tmp_path)), "no unit installed")


@pytest.mark.parametrize("command", ["status", "peers"])
def test_status_and_peers_without_the_token_the_api_needs(
        initialised_node, spawn_node, cli, one_line_error, command):
    node = spawn_node(initialised_node, "--set", "api.token=needed-token-123")
    node.wait_ready()
    one_line_error(cli(command, "--data-dir", str(initialised_node)),
                   "needs an API token", "BZZZ_EDGE_API_TOKEN")
    node.signal(signal.SIGTERM)
    assert node.wait_exit() == ExitCode.OK


def test_status_with_no_running_node(initialised_node, cli, one_line_error):
    one_line_error(cli("status", "--data-dir", str(initialised_node)), "no running node found")


def test_network_key_export_refuses_an_existing_file(initialised_node, tmp_path, cli,
                                                     one_line_error):
    out = tmp_path / "exported.key"
    out.write_text("precious")
    one_line_error(cli("network-key", "export", "--data-dir", str(initialised_node),
                       "--output", str(out)), "already exists", "--force")
    assert out.read_text() == "precious"
    result = cli("network-key", "export", "--data-dir", str(initialised_node), "--output",
                 str(out), "--force")
    assert result.returncode == 0, result.stderr
    assert out.read_text() == (initialised_node / "network.key").read_text()


@pytest.mark.parametrize("name", ["identity.key", "network.key"])
def test_network_key_export_never_writes_over_the_nodes_own_keys(
        initialised_node, cli, one_line_error, name):
    own = initialised_node / name
    before = own.read_bytes()
    one_line_error(cli("network-key", "export", "--data-dir", str(initialised_node),
                       "--output", str(own), "--force"), "own key files")
    assert own.read_bytes() == before


@pytest.mark.parametrize("value", ["yes", "true", "2"])
def test_unrecognised_pure_value_is_refused(cli, one_line_error, value):
    one_line_error(cli("version", env={"BZZZ_EDGE_PURE": value}), "BZZZ_EDGE_PURE", repr(value))


def test_config_validate(tmp_path, cli, one_line_error):
    good = tmp_path / "good.toml"
    good.write_text('[log]\nlevel = "debug"\n[health]\nmin_peers = 2\n')
    result = cli("config", "validate", str(good), "--data-dir", str(tmp_path))
    assert result.returncode == 0 and "valid (2 keys set in the file)" in result.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text('[network]\nmax_conections = 5\n')
    one_line_error(cli("config", "validate", str(bad)), "network.max_conections",
                   "did you mean network.max_connections")
    one_line_error(cli("config", "validate", str(tmp_path / "missing.toml")), "no such")
