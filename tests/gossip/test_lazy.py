"""Lazy repair's announcements, on a message cache of its own (no router around it)."""

from __future__ import annotations

import random

from bzzz_edge.gossip._batch import ControlBatch
from bzzz_edge.gossip._lazy import LazyRepair
from bzzz_edge.gossip._mcache import MessageCache, peer_group
from bzzz_edge.gossip._mesh import TopicState
from bzzz_edge.gossip._receipt import GossipReceipt

from .conftest import NET, TOPIC, config, message, nid


def _announced(batch: ControlBatch, msg_id: bytes) -> set[bytes]:
    return {peer for peer, control in batch.drain()
            for _, ids in control.ihave if msg_id in ids}


def test_a_message_still_owed_is_announced_every_heartbeat_of_its_window() -> None:
    # Newer messages that every peer holds are settled at once; the announcement skips what is
    # settled, and must not skip an older message that some peers may still lack.
    cfg = config()
    cache = MessageCache(history=cfg.history, max_bytes=cfg.cache_bytes)
    lazy = LazyRepair(cfg, random.Random(1), cache,
                      GossipReceipt(NET, replay_window=cfg.replay_window))
    peers = [nid(i) for i in range(1, 3 + cfg.lazy_degree)]  # more than one heartbeat tells
    topics = {TOPIC: TopicState(subscribed=True, peers=dict.fromkeys(peers))}
    owed = message(9, 1)
    cache.put(owed.msg_id, owed, 0.0, verified=True)
    for beat in range(cfg.gossip_windows):
        now = beat * cfg.heartbeat_interval
        held = message(9, 2 + beat, now=now)
        cache.put(held.msg_id, held, now, verified=True).have = peer_group(peers)
        batch = ControlBatch(ihave_budget=100, iwant_budget=100)
        lazy.announce(now, topics, batch)
        assert len(_announced(batch, owed.msg_id)) == cfg.lazy_degree, beat
        assert not _announced(batch, held.msg_id)
        assert not lazy.settled()
    # Past its window it is left alone, and everything is settled.
    batch = ControlBatch(ihave_budget=100, iwant_budget=100)
    lazy.announce(cfg.gossip_windows * cfg.heartbeat_interval + 0.01, topics, batch)
    assert not _announced(batch, owed.msg_id) and lazy.settled()
