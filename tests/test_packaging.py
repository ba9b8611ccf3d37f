"""Packaging: the native build degrades to the pure twins without a compiler, unless required."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
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


# What a started node leaves unloaded (each stays in memory for the node's life once imported):
# the other commands' modules, prometheus_client until the first scrape, PyNaCl's binding
# modules, cryptography's serialization package and its OpenSSL backend module. About 4 MB
# resident in every node together; see the comments where each is avoided.
_NOT_LOADED_BY_A_STARTED_NODE = frozenset({
    "prometheus_client", "urllib.request", "nacl.bindings",
    "cryptography.hazmat.primitives.serialization",
    "cryptography.hazmat.backends.openssl.backend",
    *(f"bzzz_edge.cli.{name}" for name in (
        "_agents", "_bench", "_coordinator", "_dht", "_log", "_pubsub", "_remote", "_service",
        "_tasks", "_ucxl")),
})


def _imported(lines: list[str]) -> list[str]:
    """Module names from ``PYTHONPROFILEIMPORTTIME`` lines, in import order."""
    return [line.rsplit("|", 1)[1].strip() for line in lines
            if line.startswith("import time:") and "|" in line]


def test_a_started_node_leaves_what_it_does_not_use_unloaded(initialised_node, spawn_node):
    """A real `bzzz-edge run`: Python reports every import on stderr; none of the modules above
    is among those made by the time the node logs that it is ready. Then /metrics answers as
    before, prometheus_client being imported by that first scrape."""
    node = spawn_node(initialised_node, env={"PYTHONPROFILEIMPORTTIME": "1"})
    api = node.wait_ready(timeout=60)
    node.wait_for_log(r"^node \S+ ready .* after process start", timeout=60)
    loaded = set(_imported(node.lines))
    assert "bzzz_edge.node" in loaded and "trio" in loaded  # the report is complete
    unused = loaded & _NOT_LOADED_BY_A_STARTED_NODE
    assert not unused, sorted(unused)

    with urllib.request.urlopen(f"{api}/metrics", timeout=60) as response:
        body = response.read().decode()
    assert "\nbzzz_edge_node_info{" in body
    assert "\nprocess_resident_memory_bytes " in body
    assert "\nbzzz_edge_ready " in body
    node.wait_for_log(r"\|\s*prometheus_client$", timeout=60)


def test_x25519_without_cryptography_backend_module():
    """Noise's X25519 keys, made and read, do not import cryptography's OpenSSL backend module
    (RSA, EC, DSA, OIDs), and the exchange agrees both ways."""
    code = ("import sys; from bzzz_edge.wire._noise_state import dh, new_x25519_key; "
            "a, b = new_x25519_key(), new_x25519_key(); "
            "ab = dh(a, b.public_key().public_bytes_raw()); "
            "ba = dh(b, a.public_key().public_bytes_raw()); "
            "print(ab == ba and len(ab) == 32, "
            "'cryptography.hazmat.backends.openssl.backend' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True, cwd=ROOT.parent)
    assert out.stdout.split() == ["True", "False"], out.stdout + out.stderr


def test_identity_file_is_read_the_same_with_or_without_cryptographys_pem_parser(tmp_path):
    """The identity file as `save` writes it is read without cryptography's serialization
    package; any other PEM goes to that parser, which decides as before."""
    from cryptography.hazmat.primitives import serialization

    from bzzz_edge.errors import IdentityError
    from bzzz_edge.identity import Identity, _ed25519_pkcs8_pem

    identity = Identity.generate()
    path = tmp_path / "identity.pem"
    identity.save(path)
    pem = path.read_bytes()
    fast = _ed25519_pkcs8_pem(pem)
    assert fast is not None
    reference = serialization.load_pem_private_key(pem, password=None)
    raw = serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    assert fast.private_bytes(*raw) == reference.private_bytes(*raw)  # type: ignore[union-attr]
    assert Identity.load(path).node_id == identity.node_id

    variants = {
        "crlf": pem.replace(b"\n", b"\r\n"),  # the same form: read here
        "text before": b"my node key\n" + pem,  # cryptography's parser skips it
    }
    for name, content in variants.items():
        path.write_bytes(content)
        assert Identity.load(path).node_id == identity.node_id, name
    assert _ed25519_pkcs8_pem(variants["crlf"]) is not None
    assert _ed25519_pkcs8_pem(variants["text before"]) is None

    lines = pem.splitlines()
    for bad in (b"", b"not a key", b"\n".join([lines[0], b"AAAA", lines[-1]]),
                pem.replace(lines[1][:8], b"********")):
        assert _ed25519_pkcs8_pem(bad) is None
        path.write_bytes(bad)
        with pytest.raises(IdentityError):
            Identity.load(path)


def test_a_command_that_asks_a_node_does_not_load_the_node_or_trio(tmp_path):
    """`task show` (any command that talks to a node's API) imported trio, for the exit codes,
    and the whole node, for the name of its runtime file: 0.45 s of CPU a call, every call.
    It must load neither; here it fails as a user's would (no node running), one line."""
    code = ("import sys; from bzzz_edge.cli import main; "
            f"code = main(['task', 'show', 'abc', '--data-dir', {str(tmp_path)!r}]); "
            "print(code, sorted(m for m in sys.modules if m == 'trio' or m == 'bzzz_edge.node'"
            " or m.startswith('bzzz_edge.lifecycle.shutdown')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True, cwd=ROOT.parent)
    assert out.stdout.strip() == "2 []", out.stdout + out.stderr
    assert "no running node found" in out.stderr and out.stderr.count("\n") == 1


def test_an_event_stream_does_not_load_anyios_trio_backend(initialised_node, spawn_node):
    """Starlette's streamed responses watch for the client going away in an anyio task group
    on hypercorn (ASGI 2.1): the first stream loaded anyio's task machinery for good (its
    streams, abstract classes and trio backend: 1.2 MB).
    Ours does it in a trio nursery (``api/_streaming``). A real stream, a real event read
    from it; then the first scrape's import of prometheus_client marks that every import the
    stream made has been reported."""
    node = spawn_node(initialised_node, env={"PYTHONPROFILEIMPORTTIME": "1"})
    api = node.wait_ready(timeout=60)
    with urllib.request.urlopen(f"{api}/api/v1/topics/packaging%2Ftest/events",
                                timeout=60) as stream:
        request = urllib.request.Request(f"{api}/api/v1/topics/packaging%2Ftest/messages",
                                         data=b"hello", method="POST")
        with urllib.request.urlopen(request, timeout=60) as published:
            assert published.status == 200
        while not stream.readline().startswith(b"data:"):
            pass
    with urllib.request.urlopen(f"{api}/metrics", timeout=60) as response:
        response.read()
    node.wait_for_log(r"\|\s*prometheus_client$", timeout=60)
    loaded = set(_imported(node.lines))
    assert "starlette.responses" in loaded  # (the report covers the stream's imports)
    task_group = {m for m in loaded if m.startswith(("anyio._backends", "anyio.streams",
                                                     "anyio.abc._", "anyio.lowlevel"))}
    assert not task_group, sorted(task_group)
