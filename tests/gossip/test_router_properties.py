"""Property: whatever the connected topology, publication order and transient link losses,
every subscriber ends up with every message exactly once (in each origin's order when no
link dropped anything)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from .conftest import Net, nid


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[int, set[tuple[int, int]], list[int], set[tuple[int, int]]]:
    n = draw(st.integers(2, 7))
    pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
    extra = draw(st.sets(st.sampled_from(pairs), max_size=len(pairs)))
    links = {(a, a + 1) for a in range(n - 1)} | extra  # a path keeps it connected
    origins = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=8))
    directed = [(a, b) for a, b in links] + [(b, a) for a, b in links]
    drops = draw(st.sets(st.sampled_from(directed), max_size=3))
    return n, links, origins, drops


def _run(net: Net, links: Any, origins: list[int], drops: Any) -> list[Any]:
    """Connect ``links``, subscribe everyone, then publish from ``origins`` (each origin's
    messages numbered from 1) while the nodes in ``drops`` are down; the messages published."""
    for a, b in sorted(links):
        net.connect(a, b)
    net.subscribe()
    net.advance(0.2)
    net.down = set(drops)
    seqs: Counter[int] = Counter()
    published = []
    for origin in origins:
        seqs[origin] += 1
        published.append(net.publish(origin, seqs[origin]))
        net.advance(0.01)
    net.down.clear()
    return published


@settings(max_examples=60, deadline=None)
@given(scenario=scenarios())
def test_every_subscriber_gets_every_message_exactly_once(scenario) -> None:  # type: ignore[no-untyped-def]
    n, links, origins, drops = scenario
    net = Net(n)
    published = _run(net, links, origins, drops)
    cfg = net.routers[nid(0)].config
    net.advance(2 * (cfg.refresh_interval + cfg.heartbeat_interval))
    for i in range(n):
        got = Counter((d.message.origin, d.message.seq) for d in net.delivered(i))
        assert got == Counter((m.origin, m.seq) for m in published)
        if not drops:
            for origin in set(origins):
                order = [d.message.seq for d in net.delivered(i) if d.message.origin == nid(origin)]
                assert order == sorted(order)


@settings(max_examples=30, deadline=None)
@given(scenario=scenarios())
def test_handle_message_acts_exactly_as_handle_received(scenario) -> None:  # type: ignore[no-untyped-def]
    """The service hands gossip messages to ``handle_message`` (no event record, no dispatch);
    the same scenario through it and through ``handle(Received(...))`` sends and does the same
    things, in the same order."""
    n, links, origins, drops = scenario
    nets = [Net(n), Net(n, direct=True)]
    for net in nets:
        _run(net, links, origins, drops)
        net.advance(1.0)
    assert nets[0].sent == nets[1].sent
    assert nets[0].actions == nets[1].actions
    assert nets[1].delivered(n - 1)  # (the scenario delivered something)
