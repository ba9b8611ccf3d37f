"""Fixtures for the discovery tests: the netns harness and mDNS probe processes.

The harness lives in tests/_harness/netns.py; tests/conftest.py loads it by path (tests cannot
import each other) and provides its fixtures (``netns_lan``, ``netns_hosts``).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

HARNESS_DIR = Path(__file__).parents[1] / "_harness"
PROBE_SCRIPT = HARNESS_DIR / "mdns_probe.py"


# Loaded by tests/conftest.py (which also provides the netns_lan and netns_hosts fixtures).
netns: ModuleType = sys.modules["_bzzz_test_harness_netns"]


@pytest.fixture
def netns_harness() -> ModuleType:
    """The harness module itself, for tests that build a ``Lan`` by hand (skips if unusable)."""
    reason = netns.unavailable_reason()
    if reason is not None:
        pytest.skip(f"network namespaces unavailable: {reason}")
    return netns


@dataclass
class Probe:
    """An mdns_probe.py process in a namespace, and its JSON lines."""

    host: Any
    port: int
    proc: subprocess.Popen[str]
    lines: Any  # netns.LineReader

    def wait(self, event: str, timeout: float = 10.0,
             where: Callable[[dict[str, Any]], bool] = lambda item: True) -> dict[str, Any]:
        return self.lines.wait_for(lambda item: item["event"] == event and where(item), timeout,
                                   what=f"{event!r} line")

    def seen(self, event: str) -> list[dict[str, Any]]:
        """Every ``event`` line printed so far."""
        return [item for item in self.lines.items if item["event"] == event]


@pytest.fixture
def start_probe() -> Callable[..., Probe]:
    """``start_probe(host, fingerprint, port, *extra_args)``: run an mDNS probe in ``host``."""

    def start(host: Any, fingerprint: str, port: int, *extra: str) -> Probe:
        proc = host.popen([sys.executable, str(PROBE_SCRIPT), "--fingerprint", fingerprint,
                           "--port", str(port), *extra],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return Probe(host, port, proc, netns.LineReader(proc.stdout, f"probe in {host.name}"))

    return start
