"""Pub/sub on real clusters of node processes on loopback: exactly once, in each origin's order,
only to subscribers, and nothing from a node without the network key."""

from __future__ import annotations

import re
import urllib.request

import pytest

from bzzz_edge.cluster import LocalCluster
from bzzz_edge.gossip.topics import COORDINATION, issue_topic

pytestmark = pytest.mark.slow


def _assert_exactly_once_in_origin_order(got: list[dict], published: set[tuple[str, int]],
                                         where: str) -> None:
    ids = [(d["origin"], d["seq"]) for d in got]
    assert len(ids) == len(set(ids)), f"{where}: duplicates delivered"
    assert set(ids) == published, f"{where}: missing {published - set(ids)}"
    last: dict[str, int] = {}
    for origin, seq in ids:
        assert seq > last.get(origin, -1), f"{where}: {origin}:{seq} out of order"
        last[origin] = seq


@pytest.mark.pure_nodes
@pytest.mark.parametrize("size, sparse", [(3, False), (5, True), (10, False), (10, True)],
                         ids=["3-full", "5-sparse", "10-full", "10-sparse"])
def test_every_subscriber_gets_every_message_once_in_origin_order(tmp_path, ps, streams, size,
                                                                  sparse):
    with ps.start_cluster(tmp_path, size, sparse=sparse) as cluster:
        nodes = cluster.nodes
        subs = [streams(node.api, COORDINATION) for node in nodes]
        ps.wait_subscribed(nodes, COORDINATION, 1 if sparse else size - 1)
        published: set[tuple[str, int]] = set()
        for round_ in range(10):
            for publisher in nodes[:3]:
                body = ps.publish(publisher.api, COORDINATION,
                                  f"claim {publisher.index}-{round_}")
                published.add((body["origin"], body["seq"]))
        for node, sub in zip(nodes, subs, strict=True):
            got = sub.wait_for(len(published), timeout=30)
            _assert_exactly_once_in_origin_order(got, published, f"node{node.index}")
            assert {d["topic"] for d in got} == {COORDINATION}
            own = [d for d in got if d["origin"].startswith(node.short_id)]
            assert all(d["hops"] == 0 for d in own)  # own publications reach own subscribers
            assert all(d["hops"] >= 1 for d in got if d not in own)
        # Late copies (repair, relays) are not delivered again.
        marker = ps.publish(nodes[-1].api, COORDINATION, "marker")
        for node, sub in zip(nodes, subs, strict=True):
            got = sub.wait_for_data("marker")
            assert len(got) == len(published) + 1, f"node{node.index}"
            assert got[-1]["seq"] == marker["seq"]


def test_dynamic_topic_reaches_only_its_subscribers_and_leaving_stops_it(tmp_path, ps, streams):
    topic = issue_topic(7)
    with ps.start_cluster(tmp_path, 5, sparse=False) as cluster:
        nodes = cluster.nodes
        subs = {1: streams(nodes[1].api, topic), 3: streams(nodes[3].api, topic)}
        others = [nodes[0], nodes[2], nodes[4]]
        ps.wait_subscribed(others, topic, 2)
        assert ps.topics(nodes[1].api)[topic]["subscribers"] == 1
        first = ps.publish(nodes[0].api, topic, "issue 7: who takes it?")
        for sub in subs.values():
            got = sub.wait_for(1)
            assert (got[0]["seq"], got[0]["data"]) == (first["seq"], "issue 7: who takes it?")
        metrics = _metrics(nodes[1].api)
        assert f'bzzz_edge_pubsub_topic_events_total{{event="delivered",topic="{topic}"}} 1.0' \
            in metrics
        assert re.search(r'^bzzz_edge_pubsub_delivery_latency_seconds_count [1-9]', metrics,
                         re.M)
        for node in (nodes[2], nodes[4]):
            row = ps.topics(node.api).get(topic, {})
            assert row.get("delivered", 0) == 0 and row.get("duplicates", 0) == 0, row
            assert not row.get("joined", False)
        subs[1].close()  # node 1 leaves: the stream was its only hold on the topic
        ps.wait_until(lambda: not ps.topics(nodes[1].api).get(topic, {}).get("joined"),
                   "node1 left the topic")
        ps.wait_until(lambda: ps.topics(nodes[0].api)[topic]["subscribed_peers"] == 1,
                   "node0 saw node1 leave")
        ps.publish(nodes[0].api, topic, "second")
        assert [d["data"] for d in subs[3].wait_for(2)] == ["issue 7: who takes it?", "second"]
        assert ps.topics(nodes[1].api).get(topic, {}).get("delivered", 0) == 1


def test_a_node_without_the_network_key_gets_nothing_delivered(tmp_path, ps, streams):
    with LocalCluster(tmp_path / "net", 2, extra_args=["--set", "node.profile=local"]) as net:
        net.start()
        net.wait_for_mesh(timeout=20)
        seed = net.nodes[0]
        sub = streams(net.nodes[1].api, COORDINATION)
        with LocalCluster(tmp_path / "outsider", 1, extra_args=[
                "--set", "node.profile=local",
                "--set", f"network.bootstrap_peers=127.0.0.1:{seed.peer_port}"]) as outside:
            outside.start()
            outsider = outside.nodes[0]
            ps.wait_until(lambda: _metric(seed.api, "handshake_failed_auth") > 0,
                       "the seed refused the outsider's handshake")
            ps.publish(outsider.api, COORDINATION, "forged claim")
            ps.publish(seed.api, COORDINATION, "honest marker")
            got = sub.wait_for_data("honest marker")
            assert [d["data"] for d in got] == ["honest marker"]
            assert outsider.get("/api/v1/node")["connected_peers"] == 0


def _metrics(api: str) -> str:
    with urllib.request.urlopen(api + "/metrics", timeout=5) as response:
        return str(response.read().decode())


def _metric(api: str, event: str) -> float:
    text = _metrics(api)
    match = re.search(rf'^bzzz_edge_net_events_total\{{event="{event}"\}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0
