"""Fixtures for the operations tests: the CLI as a real process, pairs of real nodes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

# Run as uid 0 without the capabilities that let root ignore file modes, so "read-only" and
# "unreadable" mean what they mean for an ordinary user.
NO_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("BZZZ_EDGE_") or k in ("BZZZ_EDGE_PURE", "BZZZ_EDGE_REQUIRE_NATIVE")}
    env.pop("NOTIFY_SOCKET", None)
    env.update(extra or {})
    return env


CliRunner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(tmp_path: Path) -> CliRunner:
    """Run ``bzzz-edge ARGS`` as a process; ``no_dac`` drops root's override of file modes."""

    def run(*args: str, env: dict[str, str] | None = None, no_dac: bool = False,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        if no_dac and shutil.which("setpriv") is None:
            pytest.skip("setpriv (util-linux) is not installed")
        prefix = NO_DAC if no_dac else []
        return subprocess.run([*prefix, sys.executable, "-m", "bzzz_edge", *args],
                              capture_output=True, text=True, env=_env(env), timeout=timeout,
                              cwd=tmp_path)

    return run


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit code 2, exactly one line on stderr, no traceback, and the line says ``fragments``."""
    lines = result.stderr.splitlines()
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture
def one_line_error() -> Callable[..., str]:
    return assert_one_line_error


@pytest.fixture
def node_pair(tmp_path: Path) -> tuple[Path, Path]:
    """Two initialised data dirs of one network (b joined with a's exported key)."""
    from bzzz_edge.cli import main

    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["init", "--data-dir", str(a)]) == 0
    key = tmp_path / "network.key"
    assert main(["network-key", "export", "--data-dir", str(a), "--output", str(key)]) == 0
    assert main(["init", "--data-dir", str(b), "--network-key-file", str(key)]) == 0
    return a, b
