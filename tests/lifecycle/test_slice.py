"""The node's short time slice (lifecycle/slice.py): taken where the kernel knows it, nothing
else about the thread's scheduling changed, and a running node has it."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bzzz_edge.lifecycle.shutdown import ExitCode
from bzzz_edge.lifecycle.slice import SHORT_SLICE, thread_slice

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(thread_slice() is None,
                                reason="no sched_getattr here (not Linux, or another CPU)")


def _kernel_takes_slices() -> bool:
    """Linux 6.12 and later read ``sched_runtime`` as the slice of a fair thread."""
    major, minor = (int(part) for part in platform.release().split(".")[:2])
    return (major, minor) >= (6, 12)


def _in_subprocess(code: str) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter (its scheduling changes stay there); it prints one
    JSON line."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    answer: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return answer


def test_the_slice_is_taken_and_nice_policy_and_threads_follow():
    answer = _in_subprocess("""
import json, os, threading
from bzzz_edge.lifecycle.slice import request_short_slice, thread_slice
os.nice(3)
taken = request_short_slice()
later = []
thread = threading.Thread(target=lambda: later.append(thread_slice()))
thread.start()
thread.join()
print(json.dumps({"taken": taken, "slice": thread_slice(), "thread": later[0],
                  "nice": os.nice(0), "policy": os.sched_getscheduler(0)}))
""")
    assert answer["taken"] is True
    assert answer["nice"] == 3 and answer["policy"] == os.SCHED_OTHER
    if _kernel_takes_slices():
        assert answer["slice"] == pytest.approx(SHORT_SLICE)
        assert answer["thread"] == pytest.approx(SHORT_SLICE)  # started after: inherited


def test_a_thread_under_another_policy_is_left_alone():
    answer = _in_subprocess("""
import json, os
from bzzz_edge.lifecycle.slice import request_short_slice, thread_slice
os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
before = thread_slice()
taken = request_short_slice()
print(json.dumps({"taken": taken, "before": before, "slice": thread_slice(),
                  "policy": os.sched_getscheduler(0)}))
""")
    assert answer["taken"] is False
    assert answer["policy"] == os.SCHED_BATCH and answer["slice"] == answer["before"]


@pytest.mark.skipif(not _kernel_takes_slices(), reason="the kernel has no per-thread slice")
def test_a_running_node_has_the_short_slice(initialised_node, spawn_node):
    node = spawn_node(initialised_node)
    node.wait_ready()
    pid = node.proc.pid
    sched = Path(f"/proc/{pid}/task/{pid}/sched").read_text()
    line = next(line for line in sched.splitlines() if line.startswith("se.slice"))
    assert int(line.split(":")[1]) == round(SHORT_SLICE * 1e9)
    node.signal(signal.SIGTERM)
    assert node.wait_exit() == ExitCode.OK
