"""House rule 1, enforced: protocol cores do no I/O, by any route.

Every module says in its docstring whether it does I/O (house rule 8); the test reads that and
checks it, so a new module is covered without editing this file:
- a module whose docstring says "No I/O." or "sans-IO" is a core: it imports no I/O library
  (directly, or through a relative import of a module that does I/O), never calls ``open`` and
  never reads a clock;
- a module that says it does I/O ("Uses trio", "Does I/O", "Trio.") is a shell;
- a module that says neither fails: it must declare itself.
A package whose ``__init__`` is a core is imported in a fresh interpreter together with all its
core modules, and no I/O library may end up in ``sys.modules`` by any route.
"""

from __future__ import annotations

import ast
import re
import site
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "bzzz_edge"
FORBIDDEN = {"trio", "socket", "lmdb", "zeroconf", "time", "datetime", "asyncio", "threading",
             "select", "selectors", "subprocess", "hypercorn", "starlette", "psutil", "ifaddr",
             "http", "urllib"}
# Never loaded by importing the cores, whatever else loads them.
STRICT = {"trio", "socket", "lmdb", "zeroconf", "asyncio", "hypercorn", "starlette", "psutil",
          "ifaddr"}
CLOCK_CALLS = {"time", "monotonic", "perf_counter", "time_ns", "monotonic_ns", "now", "utcnow",
               "today"}
CORE = re.compile(r"\bNo I/O\b(?! of its own)|\b[Ss]ans-IO\b")
SHELL = re.compile(r"\bUses trio\b|\b[Dd]oes (network )?I/O\b|\bTrio\.|\btrio shell\b")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _kind(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    if SHELL.search(doc):  # a shell may mention the sans-IO core it drives
        return "shell"
    if CORE.search(doc):
        return "core"
    return "undeclared"


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "_compiled" not in p.parts)
KINDS = {_module_name(p): _kind(p) for p in MODULES}
CORES = [p for p in MODULES if KINDS[_module_name(p)] == "core"]
CORE_PACKAGES = sorted(_module_name(p) for p in CORES if p.name == "__init__.py")


def _resolve(path: Path, node: ast.ImportFrom) -> list[str]:
    """The bzzz_edge modules an import statement loads (relative ones resolved)."""
    if node.level == 0:
        base = node.module or ""
    else:
        package = _module_name(path).split(".")
        if path.name != "__init__.py":
            package = package[:-1]
        package = package[: len(package) - node.level + 1]
        base = ".".join(package + ([node.module] if node.module else []))
    names = [base] + [f"{base}.{alias.name}" for alias in node.names]
    return [n for n in names if n in KINDS]


def _violations(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [f"imports {a.name}" for a in node.names if a.name.split(".")[0] in FORBIDDEN]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and (node.module or "").split(".")[0] in FORBIDDEN:
                found.append(f"imports {node.module}")
            found += [f"imports the I/O module {m}" for m in _resolve(path, node)
                      if KINDS[m] == "shell"]
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "open":
                found.append(f"calls open() on line {node.lineno}")
            elif isinstance(func, ast.Attribute) and func.attr in CLOCK_CALLS and \
                    isinstance(func.value, ast.Name) and func.value.id in ("time", "datetime"):
                found.append(f"reads the clock on line {node.lineno}")
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_module_declares_whether_it_does_io(path):
    assert KINDS[_module_name(path)] != "undeclared", (
        f"{path.relative_to(ROOT)}: say in the module docstring 'No I/O.' (a core) or "
        "'Uses trio.' / 'Does I/O.' (a shell)")


@pytest.mark.parametrize("path", CORES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_core_module_does_no_io(path):
    assert _violations(path) == []


def test_core_packages_load_no_io_library_by_any_route():
    modules = [_module_name(p) for p in CORES
               if (_module_name(p) if p.name == "__init__.py"
                   else _module_name(p).rpartition(".")[0]) in CORE_PACKAGES]
    # What cores may use (logging, msgpack, cryptography) loads parts of the standard library
    # themselves (datetime, threading); only what our imports add on top counts. Without the
    # site module (-S), its .pth files (an editable install's finder imports pathlib) cannot
    # load something before that a fresh install would not: the libraries' directories and
    # this tree are put on the path by hand.
    path = [str(ROOT), *site.getsitepackages()]
    code = (f"import sys\nsys.path[:0] = {path!r}\n"
            "import importlib\n"
            "import logging, msgpack, cryptography.hazmat.primitives.asymmetric.ed25519\n"
            "before = set(sys.modules)\n"
            f"for name in {modules!r}: importlib.import_module(name)\n"
            f"print(sorted(m for m in {sorted(FORBIDDEN)!r}\n"
            f"             if m in sys.modules\n"
            f"             and (m in {sorted(STRICT)!r} or m not in before)))\n")
    result = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True,
                            text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]", f"importing the cores loaded {result.stdout}"


def test_the_convention_finds_the_cores():
    for package in ("bzzz_edge.wire", "bzzz_edge.membership", "bzzz_edge.gossip",
                    "bzzz_edge.sim", "bzzz_edge.ucxl"):
        assert package in CORE_PACKAGES
    assert len(CORES) > 30
    assert KINDS["bzzz_edge.net._manager"] == "shell"
