"""BZZZ_EDGE_PURE: "1" forces the pure twins, "0" or empty does not, anything else is refused by
the package itself (ConfigError when a module with a hot path is imported) and by the CLI (one
line, exit 2), never silently read as "compiled"."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bzzz_edge import _native
from bzzz_edge.errors import ConfigError

BAD_VALUES = ["yes", "true", "2", " 1", "on"]


def _env(pure: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BZZZ_EDGE_")}
    return {**env, "BZZZ_EDGE_PURE": pure}


def _python(code: str, value: str) -> subprocess.CompletedProcess[str]:
    # -P: import the installed package, not the source tree in the working directory (which
    # has no compiled modules when the package was installed without -e, as CI does).
    return subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True,
                          env=_env(value), timeout=60)


@pytest.mark.parametrize("value", BAD_VALUES)
def test_the_value_is_checked(value):
    with pytest.raises(ConfigError) as refused:
        _native._forced_pure(value)
    assert refused.value.key == "BZZZ_EDGE_PURE"
    assert repr(value) in str(refused.value)


@pytest.mark.parametrize(("value", "forced"), [("1", True), ("0", False), ("", False)])
def test_accepted_values(value, forced):
    assert _native._forced_pure(value) is forced


@pytest.mark.parametrize("module", ["bzzz_edge.wire.lz4", "bzzz_edge.ucxl", "bzzz_edge._native"])
def test_importing_the_package_refuses_an_unknown_value(module):
    # A library user (no CLI) importing a module with a hot path.
    result = _python(f"import {module}", "yes")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("bzzz_edge.errors.ConfigError: BZZZ_EDGE_PURE='yes': expected 1"), last
    assert "0 or empty" in last


def test_a_library_user_can_catch_the_refusal_as_a_config_error():
    code = ("from bzzz_edge.errors import BzzzError\n"
            "try:\n    import bzzz_edge.ucxl\n"
            "except BzzzError as exc:\n    print(type(exc).__name__, exc.key)\n")
    result = _python(code, "true")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ConfigError", "BZZZ_EDGE_PURE"]


@pytest.mark.parametrize(("value", "pure"), [("1", True), ("0", False), ("", False)])
def test_accepted_values_choose_the_implementations(value, pure):
    result = _python("from bzzz_edge import _native; import json; "
                     "print(json.dumps(_native.implementations()))", value)
    assert result.returncode == 0, result.stderr
    chosen = set(json.loads(result.stdout).values())
    if pure:
        assert chosen == {"pure"}
    elif _native.compiled_module("lz4") is not None:
        assert chosen == {"compiled"}


@pytest.mark.parametrize("value", BAD_VALUES)
def test_the_cli_script_says_it_in_one_line(tmp_path, value, one_line_error):
    # The installed console script, which imports bzzz_edge.cli before main() runs.
    script = Path(sys.executable).parent / "bzzz-edge"
    if not script.exists():
        pytest.skip("no bzzz-edge script next to this interpreter")
    for args in (["version"], ["--help"], ["run", "--data-dir", str(tmp_path / "node")]):
        result = subprocess.run([str(script), *args], capture_output=True, text=True,
                                env=_env(value), timeout=60)
        one_line_error(result, "BZZZ_EDGE_PURE", repr(value), "expected 1")
        assert result.stdout == ""
    assert not (tmp_path / "node").exists()
