"""The shutdown manager in-process, on trio's autojump clock: order, timeouts, exit codes."""

from __future__ import annotations

import trio
import trio.testing

from bzzz_edge.lifecycle.shutdown import ExitCode, Phase, ShutdownManager


def _run(fn):
    return trio.run(fn, clock=trio.testing.MockClock(autojump_threshold=0))


def test_phases_then_priorities_in_order():
    calls: list[str] = []

    async def main():
        manager = ShutdownManager(deadline=60, default_timeout=1)
        for name, phase, priority in [
            ("store", Phase.POST_SHUTDOWN, 10), ("api", Phase.SHUTDOWN, 90),
            ("gossip", Phase.SHUTDOWN, 20), ("tmp", Phase.CLEANUP, 1),
            ("announce-leave", Phase.PRE_SHUTDOWN, 50), ("dht", Phase.SHUTDOWN, 30),
        ]:
            async def stop(name=name):
                calls.append(name)
            manager.register(name, stop, phase=phase, priority=priority)
        manager.request("test")
        code = await manager.execute()
        manager.cancel_deadline()
        return code

    assert _run(main) == ExitCode.OK
    assert calls == ["announce-leave", "gossip", "dht", "api", "store", "tmp"]


def test_overrunning_component_is_cut_off_at_its_timeout_and_others_still_stop():
    calls: list[tuple[str, float]] = []

    async def main():
        manager = ShutdownManager(deadline=60, default_timeout=5)

        async def hang():
            await trio.sleep_forever()

        async def quick():
            calls.append(("quick", trio.current_time()))

        manager.register("hang", hang, priority=1, timeout=2.5)
        manager.register("quick", quick, priority=2)
        manager.request("test")
        start = trio.current_time()
        code = await manager.execute()
        manager.cancel_deadline()
        return code, calls[0][1] - start

    code, waited = _run(main)
    assert code == ExitCode.UNCLEAN
    assert waited == 2.5


def test_failing_component_marks_unclean_but_shutdown_continues():
    stopped: list[str] = []

    async def main():
        manager = ShutdownManager(deadline=60, default_timeout=5)

        async def boom():
            raise RuntimeError("disk on fire")

        async def store():
            stopped.append("store")

        manager.register("boom", boom)
        manager.register("store", store, phase=Phase.POST_SHUTDOWN)
        code = await manager.execute()
        manager.cancel_deadline()
        return code

    assert _run(main) == ExitCode.UNCLEAN
    assert stopped == ["store"]


def test_first_request_decides_reason_and_code():
    async def main():
        manager = ShutdownManager(deadline=60, default_timeout=5)
        manager.request("critical check", ExitCode.UNHEALTHY)
        manager.request("SIGTERM")
        await manager.wait_requested()
        return manager.reason, manager.exit_code

    assert _run(main) == ("critical check", ExitCode.UNHEALTHY)
