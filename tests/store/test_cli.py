"""``bzzz-edge ucxl ...`` and ``bzzz-edge store optimize`` against a real node: the exact
output shape and exit codes users and scripts rely on; hypothesis over malformed addresses."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bzzz_edge.ucxl import UCXLError, parse

pytestmark = [pytest.mark.slow, pytest.mark.pure_nodes, pytest.mark.lone_node]

DOC = "ucxl://agent1:dev@proj:task1/*^/notes/plan.md"


def run(node, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "bzzz_edge", *args, "--api", node.api],
                          input=stdin, capture_output=True, timeout=60)


@pytest.fixture
def node(initialised_node, spawn_node):
    process = spawn_node(initialised_node)
    process.wait_ready()
    return process


def test_put_get_ls_history_rm_announce_optimize(node, tmp_path):
    plan = tmp_path / "plan.md"
    plan.write_bytes(b"# plan\n")
    done = run(node, "ucxl", "put", DOC, str(plan))
    assert done.returncode == 0 and done.stdout.decode() == DOC.replace("*^", "*1") + "\n"
    done = run(node, "ucxl", "put", DOC, "-", "--type", "text/plain", stdin=b"# plan v2\n")
    assert done.stdout.decode().strip() == DOC.replace("*^", "*2")
    done = run(node, "ucxl", "get", DOC.replace("*^", "~~1"))
    assert done.returncode == 0 and done.stdout == b"# plan\n"
    meta = json.loads(run(node, "ucxl", "get", DOC, "--meta").stdout)
    assert meta["version"] == 2 and meta["media_type"] == "text/plain"
    listing = json.loads(run(node, "ucxl", "ls", "ucxl://*:*@proj:*/*^", "--json").stdout)
    assert [item["address"] for item in listing] == [DOC.replace("*^", "*2")]
    text = run(node, "ucxl", "ls", "ucxl://agent1:dev@proj:task1/*^/notes/").stdout.decode()
    assert text.startswith(DOC.replace("*^", "*2") + "  ")
    history = json.loads(run(node, "ucxl", "history", DOC, "--json").stdout)
    assert [v["version"] for v in history] == [1, 2]
    assert run(node, "ucxl", "announce", DOC).returncode == 0
    done = run(node, "ucxl", "rm", DOC)
    assert done.returncode == 0 and DOC.replace("*^", "*3") in done.stdout.decode()
    done = run(node, "store", "optimize")
    assert done.returncode == 0 and done.stdout.startswith(b"store optimized:")
    status = run(node, "status").stdout.decode()
    assert "store     1 addresses, 3 versions" in status


def test_unknown_is_exit_1_and_malformed_is_exit_2_with_the_position(node):
    run(node, "ucxl", "put", DOC, "-", stdin=b"x")
    for address in (DOC.replace("*^", "*5"), "ucxl://a:b@c:d/*^/none", DOC.replace(
            "/notes/plan.md", "/other")):
        done = run(node, "ucxl", "get", address)
        assert done.returncode == 1 and done.stdout == b""
        assert len(done.stderr.decode().strip().splitlines()) == 1
    done = run(node, "ucxl", "get", DOC.replace("*^", "*5"))
    assert "1 version exists" in done.stderr.decode()
    done = run(node, "ucxl", "get", "ucxl://a:b@c:d/*0/x")
    assert done.returncode == 2 and "position 16" in done.stderr.decode()
    done = run(node, "ucxl", "put", "ucxl://*:b@c:d/*^/x", "-", stdin=b"x")
    assert done.returncode == 1 and "wildcard" in done.stderr.decode()


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=st.text(alphabet="ucxl:/@*^~%.-_aZ9? #\u00e9", max_size=40))
def test_malformed_addresses_exit_2_with_their_position(text):
    from bzzz_edge.cli import main

    try:
        parse(text)
    except UCXLError as exc:
        import contextlib
        import io

        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(["ucxl", "get", "--api", "http://127.0.0.1:9", "--", text])
        assert code == 2 and f"position {exc.position}" in err.getvalue()
        assert len(err.getvalue().strip().splitlines()) == 1
