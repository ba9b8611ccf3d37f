"""House rule 1: the membership core and the simulator import no I/O and read no clock."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

import bzzz_edge.membership
import bzzz_edge.sim

FORBIDDEN = {"trio", "socket", "lmdb", "zeroconf", "time", "datetime", "asyncio", "selectors"}
PACKAGES = [bzzz_edge.membership, bzzz_edge.sim]


def _imported_modules(path: pathlib.Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_no_module_imports_io_or_clock(package: object) -> None:
    files = sorted(pathlib.Path(package.__file__).parent.glob("*.py"))  # type: ignore[attr-defined]
    assert files
    for path in files:
        bad = _imported_modules(path) & FORBIDDEN
        assert not bad, f"{path.name} imports {sorted(bad)}"


def test_importing_them_loads_no_io_library() -> None:
    code = (
        "import sys, bzzz_edge.membership, bzzz_edge.sim;"
        "print(sorted(m for m in ('trio', 'socket', 'lmdb', 'zeroconf', 'asyncio')"
        " if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
