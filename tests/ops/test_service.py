"""The systemd unit: valid for systemd, starts from where it is installed, and uninstalls."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bzzz_edge.lifecycle.service import limit_nofile, location_problem, render_unit

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def _printed_unit(cli, *args: str) -> str:
    result = cli("install-service", "--print", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.skipif(SYSTEMD_ANALYZE is None,
                    reason="systemd-analyze is not installed (Debian package `systemd`; "
                           ".ci/run installs it)")
def test_unit_passes_systemd_analyze_verify(tmp_path, cli):
    unit = tmp_path / "bzzz-edge.service"
    unit.write_text(_printed_unit(cli))
    assert SYSTEMD_ANALYZE is not None
    result = subprocess.run([SYSTEMD_ANALYZE, "verify", str(unit)], capture_output=True,
                            text=True, timeout=60)
    # verify also warns (unknown keys, bad values, a missing program) without failing: any
    # output counts as a failure here.
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stderr


def test_unit_initialises_on_first_start_and_runs_this_installation(cli):
    unit = _printed_unit(cli)
    exec_start = re.search(r"^ExecStart=(\S+) (.*)$", unit, re.M)
    assert exec_start is not None
    program = Path(exec_start.group(1))
    assert program.parent == Path(sys.executable).parent and os.access(program, os.X_OK)
    assert "run --init --data-dir /var/lib/bzzz-edge" in exec_start.group(2)
    assert "StateDirectory=bzzz-edge" in unit and "DynamicUser=yes" in unit
    assert "RestartPreventExitStatus=2" in unit


def test_limit_nofile_covers_connections_and_handshakes(cli):
    assert "LimitNOFILE=4096" in _printed_unit(cli)
    unit = _printed_unit(cli, "--set", "network.max_connections=5000")
    limit = int(re.search(r"^LimitNOFILE=(\d+)$", unit, re.M).group(1))
    assert limit == limit_nofile(5000) and limit >= 2 * 5000


@pytest.mark.parametrize("path", ["/home/pi/.venv/bin/bzzz-edge", "/tmp/venv/bin/python3",
                                  "/root/bzzz/.venv/bin/bzzz-edge", "/var/tmp/x"])
def test_locations_hidden_by_the_hardening_are_named(path):
    problem = location_problem([Path("/opt/bzzz-edge/bin/bzzz-edge"), Path(path)])
    assert problem is not None and path in problem and "/opt/bzzz-edge" in problem


def test_system_locations_are_fine():
    assert location_problem([Path("/opt/bzzz-edge/bin/bzzz-edge"), Path("/usr/bin/python3.11"),
                             Path("/usr/local/lib/python3.11")]) is None


def test_install_from_a_hidden_location_is_refused(tmp_path, cli, one_line_error):
    # This very interpreter, when it lives where the service cannot see it (a venv in /tmp or
    # a home directory, as on a Pi): refused before a unit that could never start is written.
    problem = location_problem([Path(sys.executable).absolute(), Path(sys.prefix),
                                Path(os.path.realpath(sys.executable))])
    if problem is None:
        pytest.skip("this interpreter lives where a service can run it")
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    one_line_error(cli("install-service", "--unit-dir", str(unit_dir)),
                   "could not start this installation", "/opt/bzzz-edge")
    assert list(unit_dir.iterdir()) == []


@pytest.mark.parametrize(("data_dir", "hidden"), [
    ("/home/pi/bzzz", "/home"), ("/root/bzzz", "/root"), ("/run/user/1000/bzzz", "/run/user"),
    ("/tmp/bzzz", "/tmp"), ("/var/tmp/bzzz", "/var/tmp"), ("/dev/shm/bzzz", "/dev/shm")])
def test_install_with_a_data_dir_the_service_cannot_see_is_refused(tmp_path, cli, one_line_error,
                                                                   data_dir, hidden):
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    # Refused before anything is written, and before the program's own location is checked.
    one_line_error(cli("install-service", "--data-dir", data_dir, "--unit-dir", str(unit_dir)),
                   f"--data-dir {data_dir} is under {hidden}", "leave out --data-dir",
                   "/var/lib/bzzz-edge")
    assert list(unit_dir.iterdir()) == []
    # --print too: wherever that unit went, the service could not see its state.
    printed = cli("install-service", "--print", "--data-dir", data_dir)
    one_line_error(printed, f"--data-dir {data_dir}")
    assert printed.stdout == ""


def test_install_with_a_relative_data_dir_names_where_it_resolves(tmp_path, cli, one_line_error):
    # The CLI runs in tmp_path, under /tmp here: "state" is where the service cannot see it.
    resolved = (tmp_path / "state").resolve()
    if "/tmp" not in str(resolved):
        pytest.skip("the temporary dir is not under /tmp here")
    one_line_error(cli("install-service", "--print", "--data-dir", "state"), str(resolved))


def test_install_with_a_data_dir_the_service_can_see(cli):
    unit = _printed_unit(cli, "--data-dir", "/srv/bzzz-edge")
    assert "run --init --data-dir /srv/bzzz-edge " in unit
    assert "ReadWritePaths=/srv/bzzz-edge" in unit.splitlines()


def test_uninstall_removes_the_unit(tmp_path, cli):
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    (unit_dir / "bzzz-edge.service").write_text(render_unit("/opt/bzzz-edge/bin/bzzz-edge"))
    result = cli("uninstall-service", "--unit-dir", str(unit_dir))
    assert result.returncode == 0, result.stderr
    assert not (unit_dir / "bzzz-edge.service").exists()
