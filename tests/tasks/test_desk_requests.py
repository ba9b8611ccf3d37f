"""What reaches the claim desk and the claim route from other nodes (``tasks/_desk.py``): a
request with seconds that are not a number, and a coordinator of an older version that does
not know ``tasks.claim``. In process, over the stand-in coordinator of test_desk.py with a real
task machine behind it."""

from __future__ import annotations

import math
import sys

import msgpack
import pytest
import trio
import trio.testing

from bzzz_edge.consensus.proposals import Committed, Failure, ProposalError
from bzzz_edge.consensus.storage import DATABASES as RAFT_DATABASES
from bzzz_edge.errors import BzzzError
from bzzz_edge.identity import Identity
from bzzz_edge.net import ConnectionManager, NetLimits, RequestFailed
from bzzz_edge.store import Store
from bzzz_edge.tasks import Profile
from bzzz_edge.tasks._desk import ClaimDesk, ClaimRoute
from bzzz_edge.tasks.service import TaskService
from bzzz_edge.tasks.storage import DATABASES
from bzzz_edge.tasks.wiring import serve_task_rpcs
from bzzz_edge.wire.constants import REQUEST_FLOOD_FACTOR

from .test_desk import GROUP, _claim_as, _Coordinator
from .test_retry import IDS, Log, announce

dial = sys.modules["_bzzz_test_harness_dial"]  # tests/_harness/dial.py, via conftest


@pytest.mark.parametrize("seconds", [math.nan, "nan", math.inf, "-inf"])
def test_seconds_that_are_not_a_finite_number_are_refused_as_malformed(seconds: object) -> None:
    # Held behind another claim of its task, a NaN reached trio.move_on_at and raised out of
    # the handler: an "internal error" and a traceback logged for every such request.
    log = Log()
    log.apply(announce("t"))
    desk = ClaimDesk(log.machine, {})
    coordinator = _Coordinator(log)
    coordinator.stalled = True  # the first claim stays in flight until its timeout

    async def main() -> None:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                first = msgpack.packb([GROUP, _claim_as(1, "t"), 1.0])
                nursery.start_soon(desk.serve_rpc, coordinator, b"p1", first)
                await trio.testing.wait_all_tasks_blocked()
                second = msgpack.packb([GROUP, _claim_as(2, "t"), seconds])
                with pytest.raises(BzzzError, match="seconds must be a finite number"):
                    await desk.serve_rpc(coordinator, b"p2", second)
                nursery.cancel_scope.cancel()
        assert desk._counters["malformed_claim_requests"] == 1

    trio.run(main)


class _OldCoordinator:
    """The transport to a coordinator of the previous version (no ``tasks.claim``): every
    request is answered as its connection answers an unknown method, and counted as it counts
    them; past ``REQUEST_FLOOD_FACTOR * max_inflight_requests`` on one connection it closes it
    as a flood and bans the peer (``Connection._on_request``)."""

    def __init__(self, node_id: bytes) -> None:
        self.node_id = node_id
        self.unknown_method = 0

    @property
    def connections(self) -> dict[bytes, object]:
        return {self.node_id: object()}

    async def request(self, peer_id: bytes, method: str, body: bytes, *,
                      timeout: float = 5.0) -> bytes:
        await trio.lowlevel.checkpoint()
        self.unknown_method += 1
        raise RequestFailed(f"{method}: peer answered with an error: unknown method "
                            f"{method!r}")


class _Claimant:
    """The claimant's consensus service; the log's own forwarding commits at once."""

    proposal_timeout = 1.0
    group = GROUP

    def __init__(self, leader: bytes) -> None:
        self.node_id = IDS[2].node_id
        self.leader = leader
        self.forwarded = 0

    async def propose(self, command: bytes, *, timeout: float | None = None,
                      forward: bool = True) -> Committed:
        await trio.lowlevel.checkpoint()
        self.forwarded += 1
        return Committed(self.forwarded, 1, command)

    async def wait_for_leader(self, deadline: float) -> bool:
        return True

    async def next_role_change(self) -> None:
        await trio.sleep_forever()


def test_an_older_coordinator_is_asked_for_tasks_claim_once_not_past_its_flood_allowance():
    flood_allowance = REQUEST_FLOOD_FACTOR * 64  # network.max_inflight_requests' default
    old = _OldCoordinator(IDS[0].node_id)
    claimant = _Claimant(old.node_id)
    route = ClaimRoute(claimant, old, ClaimDesk(Log().machine, {}))

    async def main() -> None:
        for i in range(flood_allowance + 1):
            await route.propose(_claim_as(2, f"t{i}"))

    trio.run(main)
    assert claimant.forwarded == flood_allowance + 1  # every claim was made, through the log
    assert old.unknown_method == 1


def test_a_coordinator_still_starting_is_not_taken_for_an_older_node(tmp_path) -> None:
    # A restarting node leads as soon as consensus starts, before its task service does: a
    # claim that reached it then was answered "unknown method", and the claimant sent every
    # claim through the log for ten minutes. Now `tasks.claim` is registered with the transport
    # (serve_task_rpcs, start_peering's register_rpcs), and until the service runs it answers
    # "coordination is not running" (NO_QUORUM), which the claimant's proposer retries. Real
    # managers on loopback, a real task service that has not been started.
    key = bytes(range(32))
    store = Store(tmp_path / "store", map_size=2**24, databases=(*DATABASES, *RAFT_DATABASES))
    try:
        starting = ConnectionManager(Identity.generate(), key, listen=("127.0.0.1", 0),
                                     limits=NetLimits())
        starting_node = type("Node", (), {"tasks": TaskService(
            IDS[0], store, network_id=b"N" * 16, profile=Profile({}, frozenset(), 10),
            release_after=10.0)})()
        serve_task_rpcs(starting_node, starting)
        claimant = ConnectionManager(Identity.generate(), key, listen=("127.0.0.1", 0),
                                     limits=NetLimits())
        consensus = _Claimant(starting.node_id)
        route = ClaimRoute(consensus, claimant, ClaimDesk(Log().machine, {}))
        events = claimant.events.subscribe()

        async def main() -> None:
            async with trio.open_nursery() as nursery:
                port = await nursery.start(starting.run)
                await nursery.start(claimant.run)
                await dial.dial_and_wait(claimant, port, events)
                with pytest.raises(ProposalError, match="coordination is not running") as no:
                    await route.propose(_claim_as(2, "t1"))
                # Not taken, and it says so: retried, a 503 in the end (an RPC error read as
                # "it may have committed it", a 504).
                assert no.value.reason is Failure.NO_QUORUM
                nursery.cancel_scope.cancel()

        trio.run(main)
        assert consensus.forwarded == 0  # not sent through the log as to an older node
        assert route._without_desk == {}
    finally:
        store.close()
