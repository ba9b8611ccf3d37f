"""The README stays true: every config key documented, the two set-up commands present."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bzzz_edge.config import SCHEMA

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def test_every_config_key_is_in_the_readme():
    text = README.read_text()
    missing = [k.dotted for k in SCHEMA if f"`{k.dotted}`" not in text or k.env_name not in text]
    assert missing == []


def test_readme_set_up_commands_are_extractable():
    for which, expected in [("start", "bzzz-edge run --init"), ("test", "pytest")]:
        out = subprocess.run([sys.executable, str(ROOT / ".ci" / "readme_command.py"), which],
                             capture_output=True, text=True, check=True).stdout
        assert out.startswith("python3 -m venv .venv && ") and expected in out


def test_ruff_is_clean():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", str(ROOT)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
