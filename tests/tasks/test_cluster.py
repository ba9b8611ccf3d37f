"""Claims on a real cluster of node processes: every node claims every task of a batch at
once; exactly one winner each, every loser told that winner, and every node agrees."""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from bzzz_edge.cluster import ClusterNode, LocalCluster
from bzzz_edge.errors import BzzzError
from bzzz_edge.ids import format_node_id

pytestmark = pytest.mark.slow

local_cluster = sys.modules["_bzzz_test_harness_local_cluster"]  # tests/_harness, via conftest

NODES = 5
TASKS = 20


def api(node: ClusterNode, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(node.api + path, data=data, method=method,
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _wait_applied(node: ClusterNode, index: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while api(node, "GET", "/api/v1/tasks")[1]["applied"] < index:
        if time.monotonic() > deadline:
            raise BzzzError(f"node{node.index} did not apply index {index} in {timeout:g}s")
        node.wait_for_new_log(timeout=0.05)


def test_every_node_claims_every_task_at_once_one_winner_each_all_agree(
        tmp_path: Path, raft_harness: Any) -> None:
    with LocalCluster(tmp_path, NODES, extra_args=["--set", "agent.capacity=1000"]) as cluster:
        local_cluster.start_all(cluster)
        cluster.wait_for_mesh(timeout=60)
        raft_harness.wait_for_coordinator(cluster, voters=5, timeout=60)
        ids = {n.index: format_node_id(n.node_id) for n in cluster.nodes}
        events = urllib.request.urlopen(  # SSE on another node than the first announcer
            cluster.nodes[1].api + "/api/v1/topics/bzzz%2Fcoordination%2Fv1/events", timeout=60)
        tasks = []
        for number in range(TASKS):
            status, answer = api(cluster.nodes[number % NODES], "POST", "/api/v1/tasks",
                                 {"title": f"batch task {number}"})
            assert status == 201, answer
            tasks.append(answer["id"])

        results: dict[tuple[str, int], tuple[int, Any, float]] = {}
        lock = threading.Lock()
        start = threading.Barrier(NODES * TASKS)

        def claim(node: ClusterNode, task_id: str) -> None:
            start.wait(timeout=60)
            began = time.perf_counter()
            status, answer = api(node, "POST", f"/api/v1/tasks/{task_id}/claim")
            with lock:
                results[(task_id, node.index)] = (status, answer, time.perf_counter() - began)

        threads = [threading.Thread(target=claim, args=(node, task_id), daemon=True)
                   for task_id in tasks for node in cluster.nodes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert len(results) == NODES * TASKS

        winners: dict[str, str] = {}
        last = 0
        for task_id in tasks:
            answers = {i: results[(task_id, i)] for i in ids}
            won = [i for i, (status, _, _) in answers.items() if status == 200]
            assert len(won) == 1, {i: (s, a.get("reason")) for i, (s, a, _) in answers.items()}
            winner = ids[won[0]]
            assert answers[won[0]][1]["owner"] == winner
            winners[task_id] = winner
            for i, (status, answer, _) in answers.items():
                last = max(last, answer["index"])
                if i != won[0]:
                    assert status == 409 and answer["reason"] == "owned", answer
                    assert answer["winner"] == winner  # the loser was told who won
        decided_unlogged = 0
        for node in cluster.nodes:
            _wait_applied(node, last, timeout=30)
            listing = api(node, "GET", "/api/v1/tasks")[1]
            held = {t["id"]: t["owner"] for t in listing["tasks"]}
            assert {t: held[t] for t in tasks} == winners, f"node{node.index} disagrees"
            decided_unlogged += listing["counters"]["claims_decided_unlogged"]
            # Every node applies the same log: the same count on each (absent when none).
            logged_losers = listing["counters"].get("refused_owned", 0)
        # The losers were told, most without a log entry (``_desk``): a loser enters the log
        # only when its node had applied the winner's claim before it claimed (or past the
        # hold bounds).
        losers = (NODES - 1) * TASKS
        assert decided_unlogged > 0 and logged_losers < losers
        seen: dict[str, set[str]] = {}
        with events:
            while any(seen.get(t) != {"task_announced", "task_claimed"} for t in tasks):
                line = events.readline().decode()
                if line.startswith("data:"):
                    delivery = json.loads(line[5:])
                    event = json.loads(delivery["data"])
                    seen.setdefault(event["id"], set()).add(event["type"])
                    if event["type"] == "task_claimed":
                        assert event["owner"] == winners[event["id"]]
                        # Told by this node when it applied the claim, as the winner's
                        # message of that log index: the same event ID on every node.
                        assert delivery["origin"] == winners[event["id"]]
                        assert delivery["id"] == f"{delivery['origin']}:{event['index']}"
        took = sorted(r[2] * 1000 for r in results.values())
        print(f"{NODES} nodes x {TASKS} tasks, all claiming at once: claim answered in p50 "
              f"{statistics.median(took):.1f} ms, max {took[-1]:.1f} ms; wins per node "
              f"{sorted(list(winners.values()).count(v) for v in ids.values())}")
        assert cluster.stop() == [0] * NODES


def _wait_state(node: ClusterNode, task_id: str, state: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status, task = api(node, "GET", f"/api/v1/tasks/{task_id}")
        if status == 200 and task["state"] == state:
            return task  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise BzzzError(f"task {task_id} not {state} on node{node.index} in {timeout:g}s: "
                            f"{task}")
        node.wait_for_new_log(timeout=0.1)


def test_kill9_owner_its_tasks_are_released_after_grace_and_a_missed_deadline_too(
        tmp_path: Path, raft_harness: Any) -> None:
    extra = ["--set", "agent.release_after=1", "--set", "agent.capacity=10"]
    with LocalCluster(tmp_path, 3, extra_args=extra) as cluster:
        local_cluster.start_all(cluster)
        cluster.wait_for_mesh(timeout=60)
        status = raft_harness.wait_for_coordinator(cluster, voters=3, timeout=60)
        leader = raft_harness.node_of(cluster, status["leader"])
        victim, survivor = [n for n in cluster.nodes if n is not leader]
        held = [api(leader, "POST", "/api/v1/tasks", {"title": f"t{i}"})[1]["id"]
                for i in range(2)]
        for task_id in held:
            assert api(victim, "POST", f"/api/v1/tasks/{task_id}/claim")[0] == 200
        late = api(leader, "POST", "/api/v1/tasks", {"title": "late", "deadline": 0.5})[1]["id"]
        assert api(survivor, "POST", f"/api/v1/tasks/{late}/claim")[0] == 200

        released = _wait_state(survivor, late, "reassigned", timeout=30)
        assert released["owner"] is None
        assert released["history"][-1]["event"] == "released"
        assert released["history"][-1]["text"] == "deadline"

        cluster.kill(victim)
        for task_id in held:
            task = _wait_state(survivor, task_id, "reassigned", timeout=60)
            assert task["history"][-1]["text"] == "owner_dead"
            status, answer = api(survivor, "POST", f"/api/v1/tasks/{task_id}/claim")
            assert status == 200 and answer["owner"] == format_node_id(survivor.node_id)
        assert _wait_state(leader, held[0], "claimed", timeout=30)["owner"] == \
            format_node_id(survivor.node_id)
        assert cluster.stop() == [0 if n is not victim else -9 for n in cluster.nodes]


def test_kill9_coordinator_during_a_claim_burst_every_claim_settles_won_or_lost(
        tmp_path: Path, raft_harness: Any) -> None:
    """The coordinator dies by kill -9 while four nodes claim twenty tasks at once, and a new
    one is elected within the retry window: every claim is answered won or lost to a named
    winner (the nodes propose the claims it held again on the new one, and answer with what
    their first application did), each task has exactly one winner, the one told 200, on
    every survivor."""
    with LocalCluster(tmp_path, NODES, extra_args=["--set", "agent.capacity=1000"]) as cluster:
        local_cluster.start_all(cluster)
        cluster.wait_for_mesh(timeout=60)
        status = raft_harness.wait_for_coordinator(cluster, voters=5, timeout=60)
        leader = raft_harness.node_of(cluster, status["leader"])
        claimers = [n for n in cluster.nodes if n is not leader]
        ids = {n.index: format_node_id(n.node_id) for n in claimers}
        tasks = [api(claimers[i % len(claimers)], "POST", "/api/v1/tasks",
                     {"title": f"burst task {i}"})[1]["id"] for i in range(TASKS)]
        results: dict[tuple[str, int], tuple[int, Any]] = {}
        lock = threading.Lock()
        start = threading.Barrier(len(claimers) * TASKS + 1)
        some_answered = threading.Event()

        def claim(node: ClusterNode, task_id: str) -> None:
            start.wait(timeout=60)
            answer = api(node, "POST", f"/api/v1/tasks/{task_id}/claim")
            with lock:
                results[(task_id, node.index)] = answer
                if len(results) >= TASKS // 2:
                    some_answered.set()

        threads = [threading.Thread(target=claim, args=(node, task_id), daemon=True)
                   for task_id in tasks for node in claimers]
        for thread in threads:
            thread.start()
        start.wait(timeout=60)
        assert some_answered.wait(timeout=60)
        cluster.kill(leader)  # in the middle of the burst
        for thread in threads:
            thread.join(120)
        assert len(results) == len(claimers) * TASKS  # every claim answered

        winners: dict[str, str] = {}
        for task_id in tasks:
            answers = {i: results[(task_id, i)] for i in ids}
            assert all(code in (200, 409) for code, _ in answers.values()), answers
            won = [i for i, (code, _) in answers.items() if code == 200]
            assert len(won) == 1, f"{task_id}: winners {won}: {answers}"
            winners[task_id] = ids[won[0]]
            assert answers[won[0]][1]["owner"] == ids[won[0]]
            for i, (_, answer) in answers.items():
                if i != won[0]:
                    assert answer["reason"] == "owned", answer
                    assert answer["winner"] == winners[task_id]  # told who won
        survivor = claimers[0]
        raft_harness.wait_for_coordinator(cluster, voters=5, timeout=60, not_this=status["leader"])
        applied = api(survivor, "GET", "/api/v1/tasks")[1]["applied"]
        for node in claimers:
            _wait_applied(node, applied, timeout=30)
            view = {t["id"]: t["owner"] for t in api(node, "GET", "/api/v1/tasks")[1]["tasks"]
                    if t["id"] in tasks}
            assert view == winners, f"node{node.index} disagrees with the answers"
        counters = [api(n, "GET", "/api/v1/tasks")[1]["counters"] for n in claimers]
        print(f"kill -9 of the coordinator during {len(results)} claims: "
              f"{sum(c == 200 for c, _ in results.values())} won, "
              f"{sum(c == 409 for c, _ in results.values())} lost to a named winner; "
              f"{sum(c['command_retries'] for c in counters)} proposals made again on the new "
              f"coordinator, {sum(c['command_copies'] for c in counters)} of them a copy of "
              "one committed after all")
        assert cluster.stop() == [0 if n is not leader else -9 for n in cluster.nodes]


def test_a_claim_without_a_quorum_fails_with_503_after_the_retry_window(
        tmp_path: Path, raft_harness: Any) -> None:
    """Two of five voters left: no coordinator can be elected, so a claim is proposed again
    until its deadline, then answered 503 ``no_quorum`` saying it was not decided; the task
    stays unowned on both survivors."""
    extra = ["--set", "agent.capacity=10", "--set", "coordination.proposal_timeout=1"]
    with LocalCluster(tmp_path, NODES, extra_args=extra) as cluster:
        local_cluster.start_all(cluster)
        cluster.wait_for_mesh(timeout=60)
        status = raft_harness.wait_for_coordinator(cluster, voters=5, timeout=60)
        leader = raft_harness.node_of(cluster, status["leader"])
        others = [n for n in cluster.nodes if n is not leader]
        code, answer = api(others[0], "POST", "/api/v1/tasks", {"title": "orphan"})
        assert code == 201, answer
        task_id = answer["id"]
        for node in others:
            _wait_applied(node, answer["index"], timeout=30)
        dead = [leader, *others[:2]]
        for node in dead:
            cluster.kill(node)
        left = others[2:]
        code, answer = api(left[0], "POST", f"/api/v1/tasks/{task_id}/claim")
        assert code == 503, answer
        assert answer["reason"] == "no_quorum"
        assert "claim not decided: proposed" in answer["error"], answer
        print(f"without a quorum: {code} {answer['error']}")
        counters = api(left[0], "GET", "/api/v1/tasks")[1]["counters"]
        assert counters["command_retries"] >= 1 and counters["commands_undecided"] == 1
        for node in left:
            task = api(node, "GET", f"/api/v1/tasks/{task_id}")[1]
            assert task["state"] == "announced" and task["owner"] is None
        assert cluster.stop() == [-9 if n in dead else 0 for n in cluster.nodes]


def _until(node: ClusterNode, check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise BzzzError(f"node{node.index}: {what} not within {timeout:g}s")
        node.wait_for_new_log(timeout=0.05)


def test_an_announce_in_another_nodes_name_or_malformed_is_refused_and_counted(
        tmp_path: Path, raft_harness: Any) -> None:
    """Announces travel over gossip: a node holding the network key that publishes one signed
    by another key, or one that does not decode, gets it refused on every other node, counted
    by reason; a genuine one is held there and claimable."""
    import base64
    import hashlib

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from bzzz_edge.identity import Identity
    from bzzz_edge.tasks import sign

    with LocalCluster(tmp_path, 2) as cluster:
        local_cluster.start_all(cluster)
        cluster.wait_for_mesh(timeout=60)
        raft_harness.wait_for_coordinator(cluster, voters=1, timeout=60)  # and a learner
        insider, victim = cluster.nodes
        status, answer = api(insider, "POST", "/api/v1/tasks", {"title": "genuine"})
        assert status == 201, answer
        genuine = answer["id"]

        stranger = Identity(Ed25519PrivateKey.from_private_bytes(
            hashlib.sha256(b"someone else").digest()))
        in_their_name = sign(stranger, b"any network", "announce", time.time(), {
            "id": "theirs", "title": "not mine to announce", "description": "", "role": "",
            "capabilities": [], "priority": 0, "scopes": [], "deadline": None,
            "address": "ucxl://a:b@p:t/*^/"})
        before = api(victim, "GET", "/api/v1/tasks")[1]["counters"]
        for command in (in_their_name, b"\x95not a command"):
            event = {"type": "task_announced", "id": "theirs",
                     "command": base64.b64encode(command).decode()}
            status, answer = api(insider, "POST",
                                 "/api/v1/topics/bzzz%2Fcoordination%2Fv1/messages",
                                 {"data": json.dumps(event)})
            assert status in (200, 201, 202), answer

        def counted() -> bool:
            counters = api(victim, "GET", "/api/v1/tasks")[1]["counters"]
            return all(counters.get(k, 0) > before.get(k, 0)
                       for k in ("refused_forged", "refused_malformed"))

        _until(victim, counted, 30, "the bad announces counted")
        assert api(victim, "GET", "/api/v1/tasks/theirs")[0] == 404
        assert api(victim, "GET", f"/api/v1/tasks/{genuine}")[1]["state"] == "announced"
        status, answer = api(victim, "POST", f"/api/v1/tasks/{genuine}/claim")
        assert status == 200 and answer["owner"] == format_node_id(victim.node_id), answer


def test_a_node_that_joins_later_learns_the_unclaimed_tasks_and_can_claim_one(
        tmp_path: Path, raft_harness: Any) -> None:
    """An announce is published once, over gossip, whose message cache offers it to nodes that
    connect for ``gossip.history`` seconds (10 by default): a node that came later than that
    used not to hold the task until somebody claimed it, so it could never claim it. The
    announcer now tells every node that connects its announces still pending
    (``tasks/_share.py``). The history is cut to its least here, and the late node comes after
    it ran out."""
    history = 0.7  # about the least the config takes: gossip_windows (3) heartbeats of 0.2 s
    with LocalCluster(tmp_path, 3, extra_args=["--set", f"gossip.history={history}"]) as cluster:
        first, second, late = cluster.nodes
        cluster.start_node(first)
        cluster.start_node(second)
        raft_harness.wait_for_coordinator(cluster, voters=1, timeout=60)
        status, answer = api(first, "POST", "/api/v1/tasks", {"title": "before you came"})
        assert status == 201, answer
        task_id = answer["id"]
        announced_at = time.monotonic()
        _until(second, lambda: api(second, "GET", f"/api/v1/tasks/{task_id}")[0] == 200, 30,
               "the announce heard over gossip")
        # Not a wait for an event: the late node must come after the cache forgot the message.
        time.sleep(max(0.0, announced_at + 2 * history - time.monotonic()))

        cluster.start_node(late)
        _until(late, lambda: api(late, "GET", f"/api/v1/tasks/{task_id}")[0] == 200, 30,
               "the pending announce told on connecting")
        held = api(late, "GET", f"/api/v1/tasks/{task_id}")[1]
        assert held["state"] == "announced" and held["owner"] is None, held
        assert held["title"] == "before you came"
        status, answer = api(late, "POST", f"/api/v1/tasks/{task_id}/claim")
        assert status == 200 and answer["owner"] == format_node_id(late.node_id), answer
        counters = api(first, "GET", "/api/v1/tasks")[1]["counters"]
        assert counters["announces_shared"] >= 1, counters
