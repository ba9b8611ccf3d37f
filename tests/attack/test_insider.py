"""Issue 8's seven insider attacks, each by a real peer holding the network key against a real
node process, with a second honest node watching.

Every test asserts that the victim stays up and healthy (/health/live, /health/ready), keeps its
memory under a stated bound, that the two honest nodes hold each other alive throughout (no
"-> dead" line about the other in their logs, alive and connected in /api/v1/peers), and that the
victim counts the attacker with the counter of the defence that acted, and, where that defence
punishes, bans the attacker by name (its node ID in the victim's "misbehaved" or "broke the
protocol" log line, and a ``peer_disconnected`` event with a punishing reason). Each test prints
one ``COST {...}`` line (and appends it to $BZZZ_ATTACK_COSTS when set): what the attack cost the
attacker (messages, bytes, seconds until banned) and the node (peak RSS growth, counters).

Scale: the issue's numbers (250,000 RPCs; 200,000 duplicates and 60,000 valid messages; 20,480
gossiped fake members; 1,100 half-open connections against 1,024 descriptors), except attack 5,
which floods 73,536 valid messages from eight identities at once: enough to push its first
message out of the 65,536-entry dedup cache (the issue's 40,000 no longer can: the cache grew
from 32,768). Eight at once used to starve the honest link (a false death): the victim relayed
the flood to the honest node over the connection that carries membership, its outbox to that
peer filled with gossip, and the probes and acks to it were dropped as "queue full". Now
membership frames have their own queue, written first, and relayed gossip fills half an outbox
at most, at most 0.8 times the receiver's per-sender budget a second.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import secrets
import signal
import socket
import sys
import threading
import time

import msgpack
import psutil
import pytest

from bzzz_edge.errors import BzzzError
from bzzz_edge.gossip._config import RouterConfig
from bzzz_edge.membership import Address as MemberAddress
from bzzz_edge.membership import (
    AliveUpdate,
    DeadUpdate,
    Gossip,
    Status,
    Sync,
    SyncEntry,
)
from bzzz_edge.membership._messages import (
    MAX_INCARNATION,
    MAX_META_ENTRIES,
    MAX_META_KEY_LEN,
    MAX_META_VALUE_LEN,
    MAX_UPDATES,
)

pytestmark = pytest.mark.slow


insider = sys.modules["_bzzz_test_harness_insider"]  # tests/_harness/insider.py, via conftest

# --- what the tests assert on, in one place (names may change as the fixes land) ----------------

#: /metrics ``bzzz_edge_*_total{event=...}`` counters of the defence that acts against each
#: attack: each must grow (none of them grows in normal traffic).
DEFENCE = {
    "oversized_state": "members_refused",  # made-up members past the unverified cap
    "incarnation": "implausible_incarnations",  # claims past the incarnation jump cap
    "rpc": "conn_unknown_method",  # refused requests; past 16 x 64 of them: a protocol error
    "duplicates": "gossip_penalised_duplicate-flood",  # over the duplicate budget: a strike
    "replay": "gossip_stale",  # the sequence window (REPLAY drops are counted as stale)
    "dial_book": "members_refused",  # rumoured members past the unverified cap
    "descriptors": "refused_handshakes",  # connections past the handshakes in progress
}
#: Drop counters of gossip receipt: a refused replay shows up in one of them.
GOSSIP_DROPS = ("gossip_duplicates", "gossip_stale", "gossip_invalid")
#: The dedup cache's size on attack 5's victim (``gossip.dedup_entries``, a quarter of the
#: default): the attack must get more messages accepted after its first than this, so that the
#: cache (oldest first) has evicted the first. Smaller than the default so the flood that
#: proves it takes seconds, not half a minute; the sequence window refusing the replay does not
#: depend on the cache's size.
DEDUP_ENTRIES = RouterConfig().dedup_entries // 4
#: Resident memory the victim may gain during one attack, in MiB.
RSS_GROWTH_MB = 64
#: Attack 4b gets 60,000 valid messages accepted (within the sender's budget; 5 gets 24,384,
#: enough to evict its smaller dedup cache): the node
#: then holds up to 16 MiB of them in its message cache, up to 16 MiB queued to the honest
#: peer, and 65,536 IDs and their receipts; its peak grows by 55-85 MiB here. The bound is on
#: that legitimate load, not on an attack that amplifies it.
RSS_GROWTH_ACCEPTED_FLOOD_MB = 128
#: Addresses one peer may put in a node's dial book (attack 6).
DIAL_BOOK_PER_SOURCE = 16
#: Incarnations a node may reach through claims about it (attack 2): far below 2**63.
SANE_INCARNATION = 2**32

TOPIC = "bzzz/coordination/v1"


def _connect(mesh, *, read: bool = True):  # -> insider.Insider
    spy = insider.Insider.connect(mesh.victim_address, mesh.network_key)
    if read:
        spy.start_reader()
        assert spy.wait_joined(), "the victim never took the insider in"
    return spy


def _fake_entry(port: int) -> SyncEntry:
    """A member of maximal metadata (every limit of the decoder at its maximum)."""
    meta = {f"{k:02d}".ljust(MAX_META_KEY_LEN, "k"): "v" * MAX_META_VALUE_LEN
            for k in range(MAX_META_ENTRIES)}
    return SyncEntry(b"\xff" + secrets.token_bytes(31), 1, Status.ALIVE,
                     MemberAddress("127.0.0.1", port), meta)


# --- 1: stop a node with two messages -----------------------------------------------------------

def test_oversized_member_state_cannot_stop_the_node(mesh):
    mark = mesh.cluster.log_positions()
    before, base = mesh.counters(), mesh.rss_mb()
    spy = _connect(mesh)
    for _ in range(2):  # each request fits in a frame; the reply to the second would not
        spy.send_swim(Sync(False, tuple(_fake_entry(1) for _ in range(150))))
    if spy.barrier():
        replies = [m for m in spy.swim if isinstance(m, Sync) and m.reply]
        assert len(replies) >= 2  # answered, within a frame (the decoder refuses bigger)
    else:  # the victim hung up on the attacker (a defence) or died (the attack working)
        mesh.assert_survived()
    mesh.assert_healthy(mark)
    growth = mesh.peak_rss_mb() - base
    assert growth < RSS_GROWTH_MB
    grew = mesh.growth(before)
    # 300 made-up members, none of which ever spoke for itself: at most 256 are kept.
    assert grew.get(DEFENCE["oversized_state"], 0) == 300 - 256, str(grew)
    mesh.record_cost("1 oversized member state", attacker_messages=2,
                attacker_bytes=spy.bytes_sent, rss_growth_mb=round(growth, 1),
                banned=mesh.punished(spy.node_id, mark), counters=grew)


# --- 2: kill a node for good ----------------------------------------------------------------

def test_absurd_incarnation_claim_cannot_stop_restarts(mesh):
    victim, cluster = mesh.victim, mesh.cluster
    before, base = mesh.counters(), mesh.rss_mb()
    spy = _connect(mesh)
    spy.send_swim(Gossip((DeadUpdate(victim.node_id, MAX_INCARNATION, spy.node_id),)))
    assert spy.barrier() or spy.closed.is_set()  # handled: answered, or hung up on
    grew = mesh.growth(before)
    growth = mesh.peak_rss_mb() - base
    assert growth < RSS_GROWTH_MB
    spy.close()
    assert victim.process is not None
    victim.process.send_signal(signal.SIGTERM)
    assert victim.process.wait(15) == 0
    mark = cluster.log_positions()
    try:
        cluster.start_node(victim)
    except BzzzError:  # it exited instead of becoming ready
        pytest.fail(f"the victim cannot start again: {mesh.exit_note()}")
    cluster.wait_for_status(victim, "alive", timeout=15, since=mark)
    cluster.wait_for_mesh(timeout=20)
    mesh.assert_healthy(mark)
    row = next(p for pid, p in mesh.honest.peers().items() if pid[:15] == victim.short_id)
    assert row["status"] == "alive" and row["incarnation"] < SANE_INCARNATION, row
    assert grew.get(DEFENCE["incarnation"], 0) == 1, grew
    mesh.record_cost("2 dead claim at 2^63-1", attacker_messages=1, rss_growth_mb=round(growth, 1),
                restarted_incarnation=row["incarnation"], counters=grew)


# --- 3: exhaust memory with RPC ---------------------------------------------------------------

def test_unread_rpc_flood_is_bounded(mesh):
    mark = mesh.cluster.log_positions()
    before, base = mesh.counters(), mesh.rss_mb()
    spy = _connect(mesh, read=False)
    count, chunk, sent = 250_000, 5_000, 0
    began = time.monotonic()
    with contextlib.suppress(insider.InsiderClosed):  # refused part way: the defence
        for _ in range(count // chunk):
            sent += spy.send_payloads(spy.rpc_payloads("no.such.method", chunk))
    # Now read: the answer to the last request (or a close) means every request was taken in.
    spy.start_reader()
    spy.wait_for(lambda: _answered(spy, count), timeout=60)
    closed_after = time.monotonic() - began
    peak = mesh.peak_rss_mb()
    assert mesh.victim.running
    assert peak - base < RSS_GROWTH_MB, f"RSS {base:.0f} -> {peak:.0f} MiB"
    mesh.assert_healthy(mark)
    # A request flood is a protocol error: the attacker is cut off and banned by name.
    assert spy.closed.is_set()
    assert mesh.punished(spy.node_id, mark), mesh.victim.messages[mark[0]:]
    assert any("broke the protocol (request flood" in m for m in mesh.banned_log(spy.node_id, mark))
    grew = mesh.growth(before)
    assert grew.get("bans", 0) >= 1 and grew.get(DEFENCE["rpc"], 0) > 0, grew
    mesh.record_cost("3 unread RPC flood", attacker_messages_sent=f">= {sent} of {count}",
                attacker_bytes=spy.bytes_sent, seconds_until_cut_off=round(closed_after, 2),
                rss_growth_mb=round(peak - base, 1), counters=grew)


def _answered(spy, request_id: int) -> bool:  # spy: insider.Insider
    return any(getattr(envelope, "type", None) == "rpc.resp"
               and msgpack.unpackb(envelope.body)[0] == request_id
               for envelope in reversed(spy.received))


# --- 4: make honest peers look dead -------------------------------------------------------------

def test_duplicate_flood_does_not_make_honest_peers_look_dead(mesh):
    mark = mesh.cluster.log_positions()
    before, base = mesh.counters(), mesh.rss_mb()
    spy = _connect(mesh)
    duplicate = spy.gossip_payloads(TOPIC, 1)[0]
    sent = 0
    began = time.monotonic()
    try:
        for _ in range(40):  # 200,000 copies, 5,000 per write
            sent += spy.send_payloads([duplicate] * 5_000)
    except insider.InsiderClosed:
        pass  # disconnected mid-flood: the defence we want
    assert spy.closed.is_set() or spy.wait_for(spy.closed.is_set, timeout=5)
    banned_after = time.monotonic() - began
    spy.barrier(timeout=2)  # fails at once: closed
    mesh.assert_healthy(mark)
    growth = mesh.peak_rss_mb() - base
    assert growth < RSS_GROWTH_MB
    grew = mesh.growth(before)
    # Each heartbeat with too many duplicates (or messages) is a strike; ten ban the sender.
    assert grew.get(DEFENCE["duplicates"], 0) >= 1, str(grew)
    assert grew.get("strikes", 0) >= 10 and grew.get("bans", 0) >= 1, str(grew)
    assert mesh.punished(spy.node_id, mark)
    assert any("misbehaved: gossip" in m for m in mesh.banned_log(spy.node_id, mark))
    mesh.record_cost("4 duplicate flood", attacker_messages_sent=f">= {sent} of 200000",
                attacker_bytes=spy.bytes_sent, seconds_until_banned=round(banned_after, 2),
                rss_growth_mb=round(growth, 1), counters=grew)


def test_valid_message_flood_does_not_make_honest_peers_look_dead(mesh):
    # The other variant: 60,000 distinct, validly signed messages from one peer. The
    # node reads one peer at most 5,000 frames a second and checks at most that many of its
    # messages, so the flood is slowed in the attacker's TCP window, never queued at the node.
    mark = mesh.cluster.log_positions()
    before, base = mesh.counters(), mesh.rss_mb()
    spy = _connect(mesh)
    payloads = spy.gossip_payloads(TOPIC, 60_000)
    began = time.monotonic()
    sent = 0
    with contextlib.suppress(insider.InsiderClosed):
        for start in range(0, len(payloads), 5_000):
            sent += spy.send_payloads(payloads[start:start + 5_000])
    flooded = spy.closed.is_set() or spy.barrier(timeout=30, attempts=3)
    took = time.monotonic() - began
    assert flooded  # the node took in the whole flood (or hung up on it)
    mesh.assert_healthy(mark)
    growth = mesh.peak_rss_mb() - base
    assert growth < RSS_GROWTH_ACCEPTED_FLOOD_MB
    grew = mesh.growth(before)
    # Every message was checked or refused as over the sender's budget: none is lost unseen.
    accepted = grew.get("gossip_delivered", 0)
    assert accepted > 0, grew
    mesh.record_cost("4b valid message flood", attacker_messages_sent=sent,
                attacker_bytes=spy.bytes_sent, seconds=round(took, 2),
                banned=mesh.punished(spy.node_id, mark), rss_growth_mb=round(growth, 1),
                counters=grew)


# --- 5: replay a message ------------------------------------------------------------------------

@pytest.mark.pure_nodes
def test_replay_after_cache_eviction_is_refused(make_mesh):
    mesh = make_mesh("--set", f"gossip.dedup_entries={DEDUP_ENTRIES}")
    # The first message, then more fresh messages than the dedup cache holds, from eight
    # identities at once (each within its burst budget of 10,000, so all are checked and
    # accepted: the cache really fills, oldest first). The first message's ID is then out of
    # the cache.
    mark = mesh.cluster.log_positions()
    base = mesh.rss_mb()
    per_flooder = DEDUP_ENTRIES // 8 + 1_000
    flooders = [_connect(mesh) for _ in range(8)]
    first = flooders[0].gossip_payloads(TOPIC, 1)[0]
    delivered = mesh.delivered(TOPIC)
    flooders[0].send_payloads([first])
    assert flooders[0].barrier()
    assert mesh.delivered(TOPIC) == delivered + 1  # the first is accepted (cached)
    batches = [f.gossip_payloads(TOPIC, per_flooder) for f in flooders]
    before = mesh.counters()
    began = time.monotonic()
    # All eight at once (each within its own budget, up to 40,000 messages a second in all):
    # what a node relays of it to the honest peer is bounded (bulk, capped per peer), and its
    # probes and acks go ahead of it (the outbox's urgent queue).
    threads = [threading.Thread(target=_flood, args=(flooder, batch), daemon=True)
               for flooder, batch in zip(flooders, batches, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "a flooder is still sending"
    for flooder in flooders:
        # Generous: in the pure build on a loaded machine, handling 40,000 signed messages
        # takes the node tens of seconds; the barrier waits for it, it does not time it.
        assert flooder.barrier(timeout=120, attempts=6)
    flood_took = time.monotonic() - began
    after_flood = mesh.growth(before)
    # More accepted since the first than the cache holds: the first has been evicted.
    assert after_flood.get("gossip_delivered", 0) > DEDUP_ENTRIES, after_flood
    # A second insider relays the replay (signed several seconds ago: inside the 60 s window).
    relay = _connect(mesh)
    before_replay, delivered = mesh.counters(), mesh.delivered(TOPIC)
    relay.send_payloads([first])
    assert relay.barrier()
    replay = mesh.growth(before_replay)
    assert replay.get(DEFENCE["replay"], 0) == 1, replay  # refused by the sequence window
    assert mesh.delivered(TOPIC) == delivered, "the replay was delivered"
    mesh.assert_healthy(mark)
    growth = mesh.peak_rss_mb() - base
    assert growth < RSS_GROWTH_ACCEPTED_FLOOD_MB
    mesh.record_cost("5 replay after cache eviction", attacker_messages_sent=8 * per_flooder + 2,
                flood_seconds=round(flood_took, 2), rss_growth_mb=round(growth, 1),
                banned=any(mesh.punished(f.node_id, mark) for f in (*flooders, relay)),
                counters_flood=after_flood, counters_replay=replay)


def _flood(flooder, batch: list[bytes]) -> None:  # flooder: insider.Insider
    """One flooder's part of attack 5, in a thread of its own. A refusal shows in the counters
    and the barrier after it."""
    with contextlib.suppress(insider.InsiderClosed):
        flooder.send_payloads(batch)


# --- 6: fill the dial book ----------------------------------------------------------------------

FAKE_MEMBERS = 20_480


def test_gossiped_fake_members_cannot_fill_the_dial_book(make_mesh):
    # 20,480 fake members, each at its own loopback address where the sink listens: every dial
    # of a fake reaches the sink, which tells the fakes apart by the address dialled. The
    # honest node, with room for the victim alone, dials no fake.
    mesh = make_mesh(honest_args=("--set", "network.max_connections=1"))
    mark = mesh.cluster.log_positions()
    before, base = mesh.counters(), mesh.rss_mb()
    sink = insider.AddressSink()
    try:
        spy = _connect(mesh)
        fakes = [AliveUpdate(b"\xff" + secrets.token_bytes(31), 1, MemberAddress(*address),
                             {"name": "fake"})
                 for address in sink.addresses(FAKE_MEMBERS)]
        for start in range(0, FAKE_MEMBERS, MAX_UPDATES):  # the most one SWIM message carries
            spy.send_swim(Gossip(tuple(fakes[start:start + MAX_UPDATES])))
        assert spy.barrier(timeout=30) or spy.closed.is_set()  # handled, or hung up on
        # A negative result needs a window: the node dials what it wants at once (no backoff
        # before a first dial to a higher node ID), so 3 s is ample.
        dialled = sink.wait_distinct(DIAL_BOOK_PER_SOURCE, timeout=3)
        assert dialled <= DIAL_BOOK_PER_SOURCE, f"{dialled} gossiped addresses dialled"
        mesh.assert_healthy(mark)
        growth = mesh.peak_rss_mb() - base
        assert growth < RSS_GROWTH_MB
        grew = mesh.growth(before)
        assert grew.get(DEFENCE["dial_book"], 0) >= FAKE_MEMBERS - 256, str(grew)
        known = len(mesh.victim.peers())
        assert known <= 256 + 2, f"the victim's peer table holds {known} peers"

        # The restart half: nothing of the rumour is persisted, so after a restart the victim
        # neither lists nor dials any fake member, although the attacker is gone. The honest
        # node is stopped first: it has heard the rumour too (until it expires there), and a
        # full-state exchange with it would teach the victim the fakes anew; the point here is
        # what the victim's own data dir brings back.
        spy.close()
        victim, honest = mesh.victim, mesh.honest
        for node in (honest, victim):
            assert node.process is not None
            node.process.send_signal(signal.SIGTERM)
            assert node.process.wait(15) == 0
        dials_before_restart = sink.total()
        mesh.cluster.start_node(victim)
        # The node wants its remembered peers at once on start: 3 s is a generous window.
        sink.wait_distinct(len(sink.dials), timeout=3)
        assert sink.total() == dials_before_restart, "fakes dialled after the restart"
        listed = [p for p in victim.peers().values()
                  if p["name"] == "fake" or p["address"].endswith(f":{sink.port}")]
        assert listed == [], listed[:3]
        assert mesh.http_status(victim.api + "/health/live") == 200
        mesh.record_cost("6 gossiped fake members", attacker_messages=FAKE_MEMBERS // MAX_UPDATES,
                         attacker_bytes=spy.bytes_sent, fakes_dialled=dialled,
                         fake_dials=dials_before_restart,
                         fake_dials_after_restart=sink.total() - dials_before_restart,
                         rss_growth_mb=round(growth, 1), victim_peer_table=known,
                         banned=mesh.punished(spy.node_id, mark), counters=grew)
    finally:
        sink.close()


# --- 7: run out of file descriptors -------------------------------------------------------------

NOFILE = 1_024  # systemd's default LimitNOFILE soft limit
HALF_OPEN = 1_100


def test_half_open_connections_cannot_exhaust_descriptors(make_mesh):
    mesh = make_mesh(victim_nofile=NOFILE)
    limits = resource.prlimit(mesh.pid(), resource.RLIMIT_NOFILE)
    assert limits == (NOFILE, NOFILE)  # started with it, not lowered later
    mark = mesh.cluster.log_positions()
    before, base = mesh.counters(), mesh.rss_mb()
    sources = [f"127.0.0.{n}" for n in range(2, 2 + 20)]  # 55 from each: under max_per_ip
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * HALF_OPEN)), hard))
    held = insider.half_open(mesh.victim_address, HALF_OPEN, source_ips=sources, per_ip=55,
                             timeout=2)
    try:
        # The kernel completes the connects into the listen backlog; the node takes them in as
        # fast as it can. Look at it once it is at its descriptor limit, or has taken in (held
        # or closed) every one.
        mesh.poll_until(lambda: len(os.listdir(f"/proc/{mesh.pid()}/fd")) >= NOFILE - 4
                        or _node_took_in(mesh.pid(), held), timeout=10)
        fds = len(os.listdir(f"/proc/{mesh.pid()}/fd"))
        live = mesh.http_status(mesh.victim.api + "/health/live", timeout=3)
        assert live == 200, f"/health/live gave {live} with {len(held)} half-open connections"
        mesh.assert_healthy(mark)
        growth = mesh.peak_rss_mb() - base
        assert growth < RSS_GROWTH_MB
        grew = mesh.growth(before)
        assert grew.get(DEFENCE["descriptors"], 0) > 0, grew
    finally:
        for sock in held:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    tracebacks = [m for m in mesh.victim.messages[mark[0]:]
                  if re.search(r"EMFILE|Traceback", m)]
    assert tracebacks == []
    assert os.path.exists(f"/proc/{mesh.pid()}")
    mesh.record_cost("7 half-open connections", attacker_connections=len(held), victim_fds=fds,
                rss_growth_mb=round(growth, 1), counters=grew)


def _node_took_in(pid: int, held: list[socket.socket]) -> bool:
    """Every socket in ``held`` is either held by process ``pid`` or closed by it."""
    taken = {c.raddr for c in psutil.Process(pid).net_connections("tcp") if c.raddr}
    return all(sock.getsockname() in taken or _closed_by_peer(sock) for sock in held)


def _closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:  # reset
        return True


def test_a_low_descriptor_limit_at_start_lowers_max_connections(make_mesh):
    # RLIMIT_NOFILE 256 from the start: connections and handshakes (64) must fit with 64
    # descriptors to spare, so the default 256 connections are lowered to 128, said once.
    mesh = make_mesh(victim_nofile=256)
    line = mesh.victim.wait_for_log(r"max_connections lowered from 256 to 128 to fit the "
                                    r"limit of 256 open files", timeout=5)
    assert "LimitNOFILE" in line
    mesh.assert_healthy({})
