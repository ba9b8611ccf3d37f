"""House rule 1: protocol cores and pure fallbacks do no I/O of their own.

They import no trio, socket, lmdb, zeroconf or clock, so they run the same in the simulator,
in tests and in the node. Checked on the source (AST), not by importing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "bzzz_edge"
FORBIDDEN = {"trio", "socket", "lmdb", "zeroconf", "time", "asyncio", "threading", "select",
             "hypercorn", "starlette", "psutil", "ifaddr"}
CORES = [
    *sorted((PACKAGE / "wire").glob("*.py")),
    *sorted((PACKAGE / "membership").glob("*.py")),
    *sorted((PACKAGE / "sim").glob("*.py")),
    *sorted((PACKAGE / "ucxl").glob("*.py")),
    PACKAGE / "discovery" / "_records.py",
    PACKAGE / "discovery" / "_book.py",
    PACKAGE / "errors.py",
]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", CORES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_core_module_imports_no_io(path):
    assert path.exists()
    assert _imports(path) & FORBIDDEN == set()


def test_the_cores_list_is_not_empty():
    assert len(CORES) > 20
