"""Coordination across a 2-3 split of five nodes in network namespaces (issue 14): the side
with the old coordinator and one other decides nothing, the three others elect a coordinator
and go on deciding, and after healing all five hold one log, with the majority's decisions
and none of the minority's attempts.

The split drops every frame between the sides on the bridge; connections stay open and go
silent, as when a switch or a Wi-Fi link between two rooms fails.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

pytestmark = pytest.mark.slow

T = TypeVar("T")


def poll(lab: Any, find: Callable[[], T | None], timeout: float, what: str) -> T:
    """``find()`` once it returns something; between tries, wait for a node to log a line."""
    deadline = time.monotonic() + timeout
    while (found := find()) is None:
        if time.monotonic() > deadline:
            states = {i: _brief(lab.api(i, "/api/v1/coordination")[1]) for i in range(5)}
            raise AssertionError(f"{what}: not within {timeout} s; nodes: {states}")
        with lab.cond:
            lab.cond.wait(0.2)
    return found


def _brief(state: dict[str, Any]) -> str:
    leader = (state["leader"] or "none")[:7]
    return (f"{state['state']} term {state['term']} leader {leader} commit "
            f"{state['commit_index']} voters {len(state['voters'])}")


def coordinator(lab: Any, indexes: list[int], *, voters: int = 5,
                not_this: str | None = None) -> tuple[int, dict[str, Any]] | None:
    """(index, status) of the coordinator all of ``indexes`` follow, if they agree on one."""
    states = [lab.api(i, "/api/v1/coordination")[1] for i in indexes]
    leaders = {s["leader"] for s in states}
    if len(leaders) != 1 or None in leaders or not_this in leaders:
        return None
    leader = leaders.pop()
    index = next(i for i, short in enumerate(lab.short) if leader.startswith(short))
    top = lab.api(index, "/api/v1/coordination")[1]
    if index not in indexes or not top["is_leader"] or len(top["voters"]) != voters:
        return None
    return index, top


def committed(lab: Any, index: int) -> list[bytes]:
    entries = lab.api(index, "/api/v1/coordination/log?start=1&limit=10000")[1]["entries"]
    return [bytes.fromhex(e["data"]) for e in entries if e["kind"] == "command"]


def propose(lab: Any, index: int, text: str, timeout: float) -> tuple[int, Any]:
    return lab.api(index, "/api/v1/coordination/propose", {"data": text, "timeout": timeout},
                   timeout=timeout + 10)


def test_a_2_3_split_minority_decides_nothing_majority_goes_on_both_converge(lab5: Any) -> None:
    lab = lab5
    everyone = list(range(5))
    old, first = poll(lab, lambda: coordinator(lab, everyone), 60, "a coordinator of 5 voters")
    assert propose(lab, old, "before the split", 10)[0] == 200
    minority = [old, (old + 1) % 5]
    majority = [i for i in everyone if i not in minority]

    lab.partition([minority, majority])
    try:
        new, second = poll(lab, lambda: coordinator(lab, majority, not_this=first["leader"]),
                           30, "a coordinator on the majority side")
        assert second["term"] > first["term"]
        status, answer = propose(lab, majority[0], "the majority decides", 10)
        assert status == 200, answer
        # The old coordinator has no majority: it steps down, and what is proposed on its
        # side fails (no quorum, or a timeout) instead of committing.
        status, answer = propose(lab, old, "the minority decides", 3)
        assert status in (503, 504), answer
        assert all(b"the minority decides" not in committed(lab, i) for i in minority)
    finally:
        lab.heal_partition()

    poll(lab, lambda: coordinator(lab, everyone, not_this=first["leader"]), 60,
         "all five following one coordinator after healing")
    assert propose(lab, new, "after healing", 10)[0] == 200

    def logs_agree() -> list[list[bytes]] | None:
        logs = [committed(lab, i) for i in everyone]
        return logs if all(b"after healing" in log for log in logs) else None

    logs = poll(lab, logs_agree, 30, "every node applied the decision made after healing")
    assert all(log == logs[0] for log in logs)
    assert b"before the split" in logs[0] and b"the majority decides" in logs[0]
    assert b"the minority decides" not in logs[0]
