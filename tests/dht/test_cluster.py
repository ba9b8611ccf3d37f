"""The DHT on a real cluster of 20 node processes on loopback (mDNS off, every node bootstrapped
from the first only): reads through the network, temporal navigation over versions written on
different nodes, a provider with bad content passed over, a killed publisher, refused records
and a STORE flood. One cluster for the module; the tests run in order (killing and attacking
last)."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import lmdb
import msgpack
import pytest

from bzzz_edge.cluster import ClusterNode, LocalCluster
from bzzz_edge.dht import (
    FindValue,
    Kind,
    Record,
    Store,
    Stored,
    Values,
    Verdict,
    decode_message,
    encode_message,
    sign_record,
)
from bzzz_edge.identity import Identity, load_network_key, network_id
from bzzz_edge.ucxl import parse
from bzzz_edge.wire.compression import Codec, encode
from bzzz_edge.wire.envelope import DirectMessage, encode_envelope

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SIZE = 20
# tests/_harness/insider.py and local_cluster.py, loaded by tests/conftest.py
insider = sys.modules["_bzzz_test_harness_insider"]
local_cluster = sys.modules["_bzzz_test_harness_local_cluster"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    base = tmp_path_factory.mktemp("dht-cluster")
    # The lan profile: the machine is shared, and local's timings flap under load.
    # Health checks every second: the check test reads a result taken after its own setup.
    with LocalCluster(base, SIZE, extra_args=["--set", "health.interval=1"]) as running:
        local_cluster.start_all(running, timeout=120)
        _wait_all_alive(running, timeout=300)
        yield running


def _wait_all_alive(cluster: LocalCluster, timeout: float) -> None:
    """Every node holds every other alive. Not a full mesh of connections: the transport dials
    at most a few members known only from others' news at a time, so with 20 nodes some pairs
    connect only when they have something to say (the DHT dials the members it asks)."""
    began = time.monotonic()
    while True:
        lacking = [n for n in cluster.nodes
                   if sum(p["status"] == "alive" for p in n.peers().values()) < SIZE - 1]
        if not lacking:
            return
        remaining = timeout - (time.monotonic() - began)
        assert remaining > 0, f"node{lacking[0].index} does not see every node alive"
        lacking[0].wait_for_new_log(timeout=min(remaining, 1.0))


def _url(node: ClusterNode, address: str, **query: str) -> str:
    url = f"{node.api}/ucxi/v1/{urllib.parse.quote(address, safe='')}"
    return url + ("?" + urllib.parse.urlencode(query) if query else "")


def _http(method: str, url: str, body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _put(node: ClusterNode, address: str, content: bytes) -> dict[str, Any]:
    status, _, body = _http("PUT", _url(node, address, publish="wait"), content)
    assert status == 201, body
    answer: dict[str, Any] = json.loads(body)
    assert answer["published"] is True
    return answer


def _get(node: ClusterNode, address: str, **query: str) -> tuple[int, dict[str, str], bytes]:
    return _http("GET", _url(node, address, **query))


def _cli(node: ClusterNode, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "bzzz_edge", *args, "--api", node.api],
                          capture_output=True, timeout=60)


SMALL = "ucxl://writer:dev@dhttest:t1/*^/notes/small.txt"


def test_value_put_on_one_node_is_read_on_another(cluster: LocalCluster) -> None:
    writer, reader = cluster.nodes[0], cluster.nodes[-1]
    _put(writer, SMALL, b"written on node A")
    status, headers, body = _get(reader, SMALL)
    assert (status, body) == (200, b"written on node A")
    assert headers["x-ucxl-source"] == "dht"
    assert headers["x-ucxl-author"][:15] == writer.short_id
    status, _, body = _get(reader, SMALL, local="1")
    assert status == 404 and json.loads(body)["error"]["code"] == "not_found"
    cli = _cli(reader, "ucxl", "get", SMALL)
    assert (cli.returncode, cli.stdout) == (0, b"written on node A"), cli.stderr
    cli = _cli(reader, "ucxl", "get", SMALL, "--local")
    assert cli.returncode == 1 and b"0 versions" in cli.stderr


def test_dht_commands_and_health_check_report_the_network(cluster: LocalCluster) -> None:
    reader = cluster.nodes[-1]
    status = json.loads(_cli(reader, "dht", "status", "--json").stdout)
    assert status["routing_table"] == SIZE - 1
    providers = json.loads(_cli(reader, "dht", "providers", SMALL, "--json").stdout)
    assert [p[:15] for p in providers["providers"]] == [cluster.nodes[0].short_id]
    found = json.loads(_cli(reader, "dht", "find", SMALL, "--json").stdout)
    assert found["records"] and found["records"][0]["value_bytes"] > 0
    assert found["hops"] >= 1 and found["answered"] >= 1  # asked of the network, held or not
    routes = _cli(reader, "dht", "routes")
    assert routes.returncode == 0 and len(routes.stdout.splitlines()) == SIZE - 1
    check = _fresh_check(reader, "dht", since=time.time(), timeout=30)
    assert check["status"] == "ok", check


def _fresh_check(node: ClusterNode, name: str, *, since: float, timeout: float) -> Any:
    """The result of check ``name`` from a run that ended after ``since`` (wall clock)."""
    began = time.monotonic()
    while True:
        check = node.get("/health/checks")["checks"][name]
        if (check["last_run"] or 0) > since:
            return check
        remaining = timeout - (time.monotonic() - began)
        assert remaining > 0, f"check {name} has not run since the test began: {check}"
        node.wait_for_new_log(timeout=min(remaining, 0.5))


def test_temporal_navigation_over_versions_written_on_different_nodes(
        cluster: LocalCluster) -> None:
    first, second, reader = cluster.nodes[1], cluster.nodes[2], cluster.nodes[7]
    address = "ucxl://writer:dev@dhttest:t1/*^/shared/plan.md"
    _put(first, address, b"plan v1 from node 1")
    _put(second, address, b"plan v2 from node 2")
    base = address.replace("*^", "{}")
    expect = {"*1": b"plan v1 from node 1", "*2": b"plan v2 from node 2",
              "*^": b"plan v2 from node 2", "*~": b"plan v1 from node 1",
              "~~1": b"plan v1 from node 1"}
    for temporal, content in expect.items():
        status, _, body = _get(reader, base.format(temporal))
        assert (status, body) == (200, content), temporal
    status, _, body = _get(reader, base.format("*3"))
    assert status == 404 and json.loads(body)["error"]["versions"] == 2
    status, _, body = _get(reader, address, history="1")
    authors = [v["author"][:15] for v in json.loads(body)["versions"]]
    assert authors == [first.short_id, second.short_id]


def _corrupt_blob(node: ClusterNode, content: bytes) -> None:
    """Overwrite the blob of ``content`` in ``node``'s store (the node keeps running: LMDB is
    multi-process) with other bytes of the same size."""
    env = lmdb.open(str(node.data_dir / "store"), max_dbs=64, map_size=1024 * 2**20)
    try:
        blobs = env.open_db(b"blobs", create=False)
        other = bytes(b ^ 0xFF for b in content)
        with env.begin(write=True) as txn:
            key = hashlib.sha256(content).digest()
            assert txn.get(key, db=blobs) is not None
            txn.put(key, encode(other, codec=Codec.RAW, min_size=2**31), db=blobs)
    finally:
        env.close()


def test_provider_with_content_not_matching_its_hash_is_passed_over(
        cluster: LocalCluster) -> None:
    honest, liar, reader = cluster.nodes[3], cluster.nodes[4], cluster.nodes[5]
    address = "ucxl://writer:dev@dhttest:t1/*^/big/model.bin"
    content = os.urandom(300 * 1024)  # more than a record carries, more than one chunk
    _put(honest, address, content)
    _put(liar, address, content)  # the newer record: its publisher is asked first
    _corrupt_blob(liar, content)
    start = len(reader.messages)
    status, headers, body = _get(reader, address)
    assert status == 200 and body == content
    assert headers["x-ucxl-hash"] == hashlib.sha256(content).hexdigest()
    reader.wait_for_event("dht_content_rejected", peer=liar.short_id, timeout=10, start=start)


def test_network_listing_is_bounded_and_merges_every_node(cluster: LocalCluster) -> None:
    status, _, body = _get(cluster.nodes[9], "ucxl://*:*@dhttest:*/*^/", network="1",
                           list="1")
    assert status == 200
    listing = json.loads(body)
    assert listing["peers"] == SIZE - 1 and listing["answered"] >= 5
    paths = sorted(item["base"].rsplit("/", 2)[-1] for item in listing["items"])
    assert paths == ["model.bin", "plan.md", "small.txt"]
    cli = _cli(cluster.nodes[9], "ucxl", "ls", "ucxl://*:*@dhttest:*/*^/", "--network")
    assert cli.returncode == 0 and len(cli.stdout.splitlines()) == 3


def test_value_is_still_read_everywhere_after_its_writer_is_killed(
        cluster: LocalCluster) -> None:
    writer = cluster.nodes[0]
    since = cluster.log_positions()
    cluster.kill(writer)
    cluster.wait_for_status(writer, "dead", timeout=60, since=since)
    for node in cluster.nodes[1:]:
        status, _, body = _get(node, SMALL)
        assert (status, body) == (200, b"written on node A"), f"node{node.index}"


def _rpc(spy: Any, bodies: list[bytes], timeout: float = 20.0) -> list[tuple[bool, Any]]:
    """Send DHT RPC requests from the insider; the (ok, answer) of each, in order."""
    ids = list(itertools.islice(_RPC_IDS, len(bodies)))
    spy.send_payloads(encode_envelope(DirectMessage(
        "rpc.req", 1, msgpack.packb([rid, "dht", body], use_bin_type=True)))
        for rid, body in zip(ids, bodies, strict=True))
    answers: dict[int, tuple[bool, Any]] = {}

    def collected() -> bool:
        for envelope in spy.received:
            if isinstance(envelope, DirectMessage) and envelope.type == "rpc.resp":
                rid, ok, payload = msgpack.unpackb(envelope.body, raw=False)
                if rid in ids:
                    answers[rid] = (ok, payload)
        return len(answers) == len(ids)

    assert spy.wait_for(collected, timeout)
    return [answers[rid] for rid in ids]


_RPC_IDS = itertools.count(10**9)


def _store_body(record: Record, rpc: int) -> bytes:
    return msgpack.packb(encode_message(Store(rpc, record)), use_bin_type=True)


def _verdict(answer: tuple[bool, Any]) -> Verdict:
    ok, payload = answer
    assert ok, payload
    message = decode_message(msgpack.unpackb(payload, raw=False))
    assert isinstance(message, Stored)
    return message.verdict


def _held(spy: Any, key: bytes) -> list[Record]:
    [answer] = _rpc(spy, [msgpack.packb(encode_message(FindValue(7, key, Kind.VALUE)),
                                        use_bin_type=True)])
    message = decode_message(msgpack.unpackb(answer[1], raw=False))
    assert isinstance(message, Values)
    return list(message.records)


def test_forged_altered_and_older_records_are_refused_by_every_node(
        cluster: LocalCluster) -> None:
    key_bytes = load_network_key(cluster.base_dir / "network.key")
    netid = network_id(key_bytes)
    writer = cluster.nodes[10]
    address = "ucxl://writer:dev@dhttest:t1/*^/notes/versioned.txt"
    _put(writer, address, b"first")
    key = parse(address).content_key
    spies = [insider.Insider.connect(("127.0.0.1", n.peer_port), key_bytes)
             for n in cluster.nodes[1:]]
    try:
        for spy in spies:
            spy.start_reader()
            assert spy.wait_joined()
        [old] = _held(spies[9], key)  # node 10's own view of its first record
        _put(writer, address, b"second")
        mallory = Identity.generate()
        forged = sign_record(mallory.private_key, network_id=netid, kind=Kind.VALUE, key=key,
                             version=old.version + 10**6, timestamp_ms=old.timestamp_ms,
                             address=old.address, value=msgpack.packb(["text/plain", b"evil"]))
        forged = Record(forged.kind, forged.key, old.publisher_key, forged.version,
                        forged.timestamp_ms, forged.address, forged.value, None,
                        forged.signature)
        altered = Record(old.kind, old.key, old.publisher_key, old.version + 10**6,
                         old.timestamp_ms, old.address,
                         msgpack.packb(["text/plain", b"evil"]), None, old.signature)
        for spy in spies:
            verdicts = [_verdict(a) for a in _rpc(spy, [_store_body(forged, 1),
                                                        _store_body(altered, 2),
                                                        _store_body(old, 3)])]
            assert verdicts == [Verdict.INVALID, Verdict.INVALID, Verdict.STALE_VERSION]
            [held] = _held(spy, key)
            assert held.publisher_key == old.publisher_key and held.version > old.version
            assert msgpack.unpackb(held.value) == ["application/x-www-form-urlencoded",
                                                   b"second"]
    finally:
        for spy in spies:
            spy.close()


def test_store_flood_from_one_peer_is_rate_limited(cluster: LocalCluster) -> None:
    key_bytes = load_network_key(cluster.base_dir / "network.key")
    victim = cluster.nodes[11]
    netid = network_id(key_bytes)
    with insider.Insider.connect(("127.0.0.1", victim.peer_port), key_bytes) as spy:
        spy.start_reader()
        assert spy.wait_joined()
        records = [sign_record(spy.identity.private_key, network_id=netid, kind=Kind.VALUE,
                               key=hashlib.sha256(b"flood %d" % i).digest(), version=1,
                               timestamp_ms=1, value=b"x" * 100) for i in range(400)]
        answers = _rpc(spy, [_store_body(r, i) for i, r in enumerate(records)], timeout=60)
    refused = sum(1 for ok, payload in answers
                  if not ok or _verdict((ok, payload)) is Verdict.RATE_LIMITED)
    stored = sum(1 for ok, payload in answers
                 if ok and _verdict((ok, payload)) is Verdict.STORED)
    assert refused >= 200 and stored <= 200, (refused, stored)
    status = victim.get("/api/v1/dht")
    assert status["counters"]["rate_limited"] >= 1
    assert victim.get("/health")["status"] in ("ok", "degraded")
