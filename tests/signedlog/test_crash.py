"""The signed log survives kill -9: every acknowledged append is there after each reopen, and
the log verifies (chain, signatures, Merkle nodes, signed root)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parent.parent / "_harness" / "log_crash.py"


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_no_acknowledged_entry(tmp_path):
    result = subprocess.run([sys.executable, str(HARNESS), str(tmp_path), "25", "12"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["ok"], outcome
    assert outcome["length"] > outcome["acked"] >= 0
