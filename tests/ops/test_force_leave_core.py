"""ForceLeave in the sans-IO membership core: departed everywhere, refuted by a live node."""

from __future__ import annotations

import random

import pytest

from bzzz_edge.errors import LocalProtocolError
from bzzz_edge.membership import (
    Address,
    DeadUpdate,
    ForceLeave,
    Gossip,
    Join,
    Membership,
    Received,
    Send,
    Status,
    local,
)

A, B, C = (bytes([n]) * 32 for n in (1, 2, 3))


def _cluster() -> dict[bytes, Membership]:
    return {node: Membership(node, address=Address("127.0.0.1", 7000 + node[0]), now=0.0,
                             config=local(), rng=random.Random(node[0]))
            for node in (A, B, C)}


def _run(nodes: dict[bytes, Membership], actions: list[tuple[bytes, object]], now: float,
         drop_to: bytes | None = None) -> None:
    """Deliver every Send (and what it causes) until quiet; sends to ``drop_to`` are lost."""
    while actions:
        sender, action = actions.pop(0)
        if isinstance(action, Send) and action.to in nodes and action.to != drop_to:
            replies = nodes[action.to].handle(Received(sender, action.message), now)
            actions.extend((action.to, reply) for reply in replies)


def _joined() -> dict[bytes, Membership]:
    nodes = _cluster()
    for x in nodes:
        for y in nodes:
            if x != y:
                join = Join(y, Address("127.0.0.1", 7000 + y[0]))
                _run(nodes, [(x, a) for a in nodes[x].handle(join, 0.0)], 0.0)
    assert all(m.num_live() == 3 for m in nodes.values())
    return nodes


def test_force_leave_marks_the_member_left_and_tells_it():
    nodes = _joined()
    actions = nodes[A].handle(ForceLeave(C), 1.0)
    assert nodes[A].status_of(C) is Status.LEFT
    told = [a for a in actions if isinstance(a, Send) and a.to == C]
    assert told and any(isinstance(a.message, Gossip) and
                        DeadUpdate(C, nodes[A].member(C).incarnation, C) in a.message.updates
                        for a in told)


def test_dead_member_forced_out_is_left_on_every_node():
    nodes = _joined()
    del nodes[C]  # C is gone for good: nothing it would say arrives
    actions = [(A, a) for a in nodes[A].handle(ForceLeave(C), 1.0)]
    now = 1.0
    while nodes[B].status_of(C) is not Status.LEFT and now < 30:
        now += 0.1
        actions += [(n, a) for n, m in nodes.items() for a in m.tick(now)]
        _run(nodes, actions, now)
    assert nodes[B].status_of(C) is Status.LEFT


def test_live_member_refutes_a_force_leave():
    nodes = _joined()
    before = nodes[C].incarnation
    _run(nodes, [(A, a) for a in nodes[A].handle(ForceLeave(C), 1.0)], 1.0)
    assert nodes[C].incarnation > before
    assert nodes[A].status_of(C) is Status.ALIVE


def test_force_leave_of_self_or_a_stranger_is_refused():
    nodes = _joined()
    with pytest.raises(LocalProtocolError, match="itself"):
        nodes[A].handle(ForceLeave(A), 1.0)
    with pytest.raises(LocalProtocolError, match="no member"):
        nodes[A].handle(ForceLeave(bytes(32)), 1.0)
