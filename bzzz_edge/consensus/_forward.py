"""Proposals from any node: proposed here on the coordinator, forwarded to it elsewhere.
Uses trio.

A forwarded proposal travels as RPC ``raft.propose`` (body ``[group, command, seconds]``); the
coordinator proposes it without forwarding again and answers ``{"index", "term"}`` or
``{"error": <Failure name>, "message", "leader"}``. When the coordinator changes under us
(it answers NOT_LEADER, or we are not connected to it) we follow the new one, a few hops at
most, within the caller's deadline. When the connection to the coordinator closes while it
holds the proposal, the outcome is unknown: that is a TIMEOUT, never a retry, so this layer
never proposes a command twice. (The task layer does, on purpose: it proposes the same signed
command again after such a failure, and its state machine makes a second copy change nothing;
see ``tasks._retry``.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from ..errors import BzzzError
from ..net import ConnectionClosed, RequestFailed
from .forwarding import (
    MALFORMED_ANSWER,
    answer_body,
    error_answer,
    follow_coordinator,
    index,
    read_answer,
    read_request,
    request_body,
)
from .proposals import Committed, Failure, ProposalError

if TYPE_CHECKING:
    from .service import ConsensusService

__all__ = ["propose_anywhere", "serve_forwarded"]

async def propose_anywhere(service: ConsensusService, command: bytes, timeout: float, *,
                           forward: bool) -> Committed:
    async def here(deadline: float) -> Committed:
        return await service.propose_here(command, deadline)

    async def there(leader: bytes, deadline: float) -> Committed | None:
        return await _forward(service, leader, command, deadline)

    return await follow_coordinator(service, timeout, here, there if forward else None)


async def _forward(service: ConsensusService, leader: bytes, command: bytes,
                   deadline: float) -> Committed | None:
    """The coordinator's answer; None when it is not (or no longer) the coordinator."""
    remaining = deadline - trio.current_time()
    if remaining <= 0:
        raise ProposalError(Failure.TIMEOUT, "no time left to forward it", leader)
    if leader not in service._manager.connections:
        return None  # not sent: safe to try the next coordinator
    body = request_body(service.group, command, remaining)
    try:
        raw = await service._manager.request(leader, "raft.propose", body,
                                             timeout=remaining + 0.5)
    except (ConnectionClosed, RequestFailed) as exc:
        raise ProposalError(Failure.TIMEOUT, f"the coordinator did not answer ({exc}); it may "
                            "have committed it", leader) from None
    answer = read_answer(raw, leader)
    if answer is None:
        return None
    try:
        return Committed(index(answer["index"]), index(answer["term"]), command)
    except (KeyError, ValueError):
        raise ProposalError(Failure.TIMEOUT, MALFORMED_ANSWER, leader) from None


async def serve_forwarded(service: ConsensusService, body: bytes) -> bytes:
    """The coordinator's side of ``raft.propose``."""
    try:
        command, seconds = read_request(body, group=service.group,
                                        limit=service.proposal_timeout)
    except ValueError as exc:
        service.counters["malformed_forwards"] += 1
        raise BzzzError(f"malformed raft.propose: {exc}") from None
    try:
        done = await service.propose(command, timeout=seconds, forward=False)
    except ProposalError as exc:
        return answer_body(error_answer(exc))
    return answer_body({"index": done.index, "term": done.term})
