"""Bounded fuzzing of every decoder, in the suite: only documented errors, twins agree.

Each target runs a fixed number of seeded inputs (the same ones on every run, a few seconds in
all) from the mutation engine; then one short coverage-guided atheris run spreads over all of
them. Longer runs: tests/fuzz/run.py --seconds N. What each target allows and checks is in its
docstring (tests/fuzz/bzzz_fuzz/).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from bzzz_fuzz.engine import fuzz
from bzzz_fuzz.targets import TARGETS

from bzzz_edge import _native

RUN_PY = Path(__file__).resolve().parent / "run.py"

# Inputs per target: each takes a second or two on this project's CI machine.
INPUTS = {
    "frames": 20000,
    "envelope": 20000,
    "noise_msg1": 5000,
    "noise_msg2": 4000,
    "noise_msg3": 2500,
    "secure_stream": 1000,
    "membership": 20000,
    "ucxl": 20000,
    "lz4": 10000,
    "compression": 5000,
    "http": 2000,
    "dht": 10000,
    "raft": 10000,
    "log_entry": 3000,
    "log_head": 2000,
    "pubsub_control": 10000,
    "gossip_body": 5000,
}


def test_every_target_has_a_budget():
    assert set(INPUTS) | {"all"} == set(TARGETS)


def test_twin_targets_compare_two_implementations():
    # ucxl and lz4 compare the pure and compiled twins; without the compiled ones they would
    # silently compare pure with pure. CI (BZZZ_EDGE_REQUIRE_NATIVE=1) refuses that.
    built = all(_native.compiled_module(name) is not None for name in ("ucxl", "lz4"))
    if not built:
        if os.environ.get("BZZZ_EDGE_REQUIRE_NATIVE") == "1":
            pytest.fail("compiled twins missing but BZZZ_EDGE_REQUIRE_NATIVE=1")
        pytest.skip("compiled twins not built: the twin targets check the pure one alone")


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_decoder_raises_only_documented_errors(name):
    report = fuzz(TARGETS[name], inputs=INPUTS[name], seed=20261206)
    assert report.inputs == INPUTS[name] or report.findings
    if report.findings:
        first = report.findings[0]
        pytest.fail(
            f"{len(report.findings)} finding(s) in {name}; first: {first.error}\n"
            f"reproduce: python {RUN_PY} --target {name} --reproduce {first.data.hex()}\n"
            f"{first.trace}"
        )


def test_coverage_guided_run_over_all_targets(tmp_path):
    try:
        import atheris  # noqa: F401
    except ImportError:
        pytest.skip("atheris is not installed (no wheel for this platform or Python); "
                    "the mutation runs above still cover every target")
    proc = subprocess.run(
        [sys.executable, str(RUN_PY), "--engine", "atheris", "--target", "all",
         "--seconds", "6", "--artifacts", str(tmp_path)],
        capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    inputs = int(proc.stdout.split()[1])
    assert inputs > 100, proc.stdout
