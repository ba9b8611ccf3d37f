"""Health checks in-process, on trio's autojump clock: results, timeouts, the critical rule."""

from __future__ import annotations

import trio
import trio.testing

from bzzz_edge.lifecycle.health import Check, CheckFailed, HealthRegistry, disk_check


def _run(fn):
    return trio.run(fn, clock=trio.testing.MockClock(autojump_threshold=0))


def test_critical_check_triggers_only_after_grace_period():
    fired: list[float] = []

    async def main():
        healthy = True

        async def flaky() -> str:
            if not healthy:
                raise CheckFailed("link down")
            return "fine"

        registry = HealthRegistry(on_critical=lambda c: fired.append(trio.current_time()))
        registry.add(Check("p2p", flaky, interval=1, timeout=1, critical=True, grace_period=5))
        async with trio.open_nursery() as nursery:
            await nursery.start(registry.run)
            assert registry.summary()["p2p"]["status"] == "ok"
            healthy = False
            start = trio.current_time()
            while not fired:
                await trio.sleep(0.5)
            nursery.cancel_scope.cancel()
        result = registry.checks["p2p"].result
        return fired[0] - start, result.message, result.consecutive_failures

    delay, message, failures = _run(main)
    assert 5 <= delay <= 7
    assert message == "link down" and failures >= 5


def test_recovery_before_grace_period_never_fires():
    fired: list[str] = []

    async def main():
        state = {"fail": 0}

        async def blip() -> str:
            if state["fail"]:
                state["fail"] -= 1
                raise CheckFailed("blip")
            return "ok"

        registry = HealthRegistry(on_critical=lambda c: fired.append(c.name))
        registry.add(Check("disk", blip, interval=1, timeout=1, critical=True, grace_period=3))
        async with trio.open_nursery() as nursery:
            await nursery.start(registry.run)
            state["fail"] = 2
            await trio.sleep(10)
            nursery.cancel_scope.cancel()
        return registry.checks["disk"].result.status

    assert _run(main) == "ok"
    assert fired == []


def test_slow_check_times_out_and_fails():
    async def main():
        async def stuck() -> str:
            await trio.sleep(100)
            return "never"

        registry = HealthRegistry(on_critical=lambda c: None)
        registry.add(Check("slow", stuck, interval=10, timeout=0.5))
        await registry.run_once(registry.checks["slow"])
        return registry.summary()["slow"]

    summary = _run(main)
    assert summary["status"] == "failing"
    assert summary["message"] == "timed out after 0.5s"


def test_disk_check_reports_free_space(tmp_path):
    async def main():
        ok = await disk_check(tmp_path, lambda: 0)()
        try:
            await disk_check(tmp_path, lambda: 2**50)()
        except CheckFailed as exc:
            return ok, str(exc)
        raise AssertionError("disk check passed with an impossible minimum")

    ok, failure = trio.run(main)
    assert "MiB free under" in ok
    assert "minimum 1125899906842624 MiB" in failure
