"""Packaging: the native build degrades to the pure twins without a compiler, unless required."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bzzz_edge import _native, signatures

ROOT = Path(__file__).resolve().parent.parent


def _build_without_compiler(tmp_path: Path, require: bool) -> subprocess.CompletedProcess:
    env = {**os.environ, "CC": "/bin/false", "LDSHARED": "/bin/false"}
    env.pop("BZZZ_EDGE_REQUIRE_NATIVE", None)
    if require:
        env["BZZZ_EDGE_REQUIRE_NATIVE"] = "1"
    return subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(tmp_path / "lib"),
         "--build-temp", str(tmp_path / "tmp")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )


@pytest.mark.skipif(not (ROOT / "setup.py").exists(), reason="needs the source tree")
def test_build_without_compiler_warns_and_succeeds(tmp_path):
    pytest.importorskip("Cython")
    result = _build_without_compiler(tmp_path, require=False)
    assert result.returncode == 0, result.stderr
    assert "Installing the pure-Python fallbacks instead" in result.stderr
    assert not list((tmp_path / "lib").rglob("*.so"))


@pytest.mark.skipif(not (ROOT / "setup.py").exists(), reason="needs the source tree")
def test_build_without_compiler_fails_when_native_required(tmp_path):
    pytest.importorskip("Cython")
    result = _build_without_compiler(tmp_path, require=True)
    # It fails because the compiler failed (CC=/bin/false), not for some other reason, and it
    # does not fall back quietly.
    assert result.returncode != 0
    assert "/bin/false" in result.stderr or "exit status 1" in result.stderr, result.stderr
    assert "Installing the pure-Python fallbacks instead" not in result.stderr


def test_forced_pure_process_uses_only_twins():
    code = ("from bzzz_edge import _native; import sys; "
            "impls = _native.implementations(); "
            "sys.exit(0 if set(impls.values()) == {'pure'} else 1)")
    env = {**os.environ, "BZZZ_EDGE_PURE": "1"}
    assert subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT.parent).returncode == 0


def test_version_command_names_each_hot_path(tmp_path):
    result = subprocess.run([sys.executable, "-m", "bzzz_edge", "version"], capture_output=True,
                            text=True, cwd=tmp_path, check=True)
    for name in _native.PURE_MODULES:
        assert f"  {name}" in result.stdout
    hot_paths = [line for line in result.stdout.splitlines()[1:]
                 if not line.startswith("  Ed25519 checks:")]
    assert f"  Ed25519 checks: {signatures.BACKEND}" in result.stdout
    expected = "pure" if _native.FORCED_PURE else "compiled"
    if os.environ.get("BZZZ_EDGE_REQUIRE_NATIVE") == "1" or _native.FORCED_PURE:
        assert all(expected in line for line in hot_paths)


def test_a_node_imports_no_test_tooling() -> None:
    """trio.testing imports pytest when it is installed: 9 MB more resident on every node
    (seen once, in a helper's change). What a running node imports must not pull in test
    tooling, nor the benchmark's progress bar or the simulator."""
    import subprocess
    import sys

    code = ("import sys, bzzz_edge.node; print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'pytest', '_pytest', 'hypothesis', 'rich', 'tqdm'}) + sorted(m for m in "
            "sys.modules if m.startswith(('trio.testing', 'bzzz_edge.sim', 'bzzz_edge.bench'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout
