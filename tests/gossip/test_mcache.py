"""The message cache's per-entry peer groups: tuples while few, sets past that; same answers."""

from __future__ import annotations

import random

from bzzz_edge.gossip._batch import ControlBatch
from bzzz_edge.gossip._lazy import LazyRepair
from bzzz_edge.gossip._mcache import MessageCache, peer_group, with_peer, without_peer
from bzzz_edge.gossip._mesh import TopicState
from bzzz_edge.gossip._receipt import GossipReceipt

from .conftest import NET, TOPIC, config, message, nid

PEERS = [bytes([i]) * 32 for i in range(40)]


def test_a_group_holds_each_peer_once_whether_tuple_or_set() -> None:
    group = peer_group(())
    for count, peer in enumerate(PEERS, 1):
        group = with_peer(group, peer)
        again = with_peer(group, peer)  # already in: the same group, nothing added
        assert again is group and len(group) == count
        assert set(group) == set(PEERS[:count])
    # Few peers: a tuple (nothing for the garbage collector to scan); many: a set.
    assert type(peer_group(PEERS[:16])) is tuple and type(peer_group(PEERS)) is set
    assert type(group) is set


def test_a_peer_leaves_a_group_of_either_kind() -> None:
    for size in (3, 30):
        group = peer_group(PEERS[:size])
        group = without_peer(group, PEERS[1])
        assert PEERS[1] not in group and set(group) == set(PEERS[:size]) - {PEERS[1]}
        assert without_peer(group, PEERS[1]) is group  # absent: unchanged


def test_a_forgotten_peer_is_in_no_entry_of_the_cache() -> None:
    cache = MessageCache(history=10.0, max_bytes=1 << 20)
    for seq, size in ((1, 2), (2, 30)):
        held = message(9, seq)
        entry = cache.put(held.msg_id, held, 0.0, verified=True)
        entry.have = peer_group(PEERS[:size])
        entry.pushed = peer_group(PEERS[:size])
    cache.forget_peer(PEERS[0])
    for seq in (1, 2):
        entry = cache.get(message(9, seq).msg_id)
        assert entry is not None
        assert PEERS[0] not in entry.have and PEERS[0] not in entry.pushed
        assert PEERS[1] in entry.have and PEERS[1] in entry.pushed


def test_announcements_skip_the_holders_of_a_message_among_many_peers() -> None:
    # Past the tuple size the groups are sets: a peer known to hold the message, or sent it,
    # is still never told of it; the others are, lazy_degree of them.
    cfg = config()
    cache = MessageCache(history=cfg.history, max_bytes=cfg.cache_bytes)
    lazy = LazyRepair(cfg, random.Random(1), cache,
                      GossipReceipt(NET, replay_window=cfg.replay_window))
    peers = [nid(i) for i in range(1, 25)]
    lacking = set(peers[-cfg.lazy_degree:])
    topics = {TOPIC: TopicState(subscribed=True, peers=dict.fromkeys(peers))}
    held = message(30, 1)
    entry = cache.put(held.msg_id, held, 0.0, verified=True)
    entry.have = peer_group(peers[:12])
    entry.pushed = peer_group(peers[12:-cfg.lazy_degree])
    assert type(entry.pushed) is tuple
    for peer in peers[:8]:  # grows past the tuple size into a set
        entry.pushed = with_peer(entry.pushed, peer)
    assert type(entry.pushed) is set
    batch = ControlBatch(ihave_budget=100, iwant_budget=100)
    lazy.announce(0.0, topics, batch)
    told = {peer for peer, control in batch.drain() for _, ids in control.ihave
            if held.msg_id in ids}
    assert told == lacking
