"""Gossip receipt checks: duplicates before crypto, signatures, replay window; no poisoning."""

from __future__ import annotations

import dataclasses

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bzzz_edge.gossip import Drop, GossipReceipt
from bzzz_edge.wire.envelope import sign_gossip

NET = b"network-id-16-by"
NOW = 1_800_000_000.0


def _message(key, seq=1, ts=NOW, body=b"hello", network=NET):
    return sign_gossip(key, network_id=network, seq=seq, timestamp_ms=int(ts * 1000),
                       topic="bzzz/coordination/v1", body=body)


def test_new_message_accepted_once_then_duplicate():
    receipt, key = GossipReceipt(NET, replay_window=60), Ed25519PrivateKey.generate()
    message = _message(key)
    assert receipt.check(message, NOW) is None
    assert receipt.check(message, NOW + 1) is Drop.DUPLICATE
    assert receipt.accepted == 1 and receipt.dropped[Drop.DUPLICATE] == 1


def test_forged_copy_is_refused_and_does_not_block_the_real_message():
    receipt, key = GossipReceipt(NET, replay_window=60), Ed25519PrivateKey.generate()
    real = _message(key)
    forged = dataclasses.replace(real, body=b"evil")
    assert receipt.check(forged, NOW) is Drop.BAD_SIGNATURE
    assert receipt.check(real, NOW) is None


def test_other_network_and_stale_messages_are_refused():
    receipt, key = GossipReceipt(NET, replay_window=60), Ed25519PrivateKey.generate()
    assert receipt.check(_message(key, network=b"another-network!"), NOW) is Drop.BAD_SIGNATURE
    assert receipt.check(_message(key, seq=2, ts=NOW - 61), NOW) is Drop.STALE
    assert receipt.check(_message(key, seq=3, ts=NOW + 61), NOW) is Drop.STALE
    assert receipt.check(_message(key, seq=4, ts=NOW - 59), NOW) is None


def test_replay_after_dedup_memory_is_refused_by_timestamp():
    receipt, key = GossipReceipt(NET, replay_window=60), Ed25519PrivateKey.generate()
    message = _message(key)
    assert receipt.check(message, NOW) is None
    # Past twice the window the ID is forgotten, but the timestamp is out of the window.
    assert receipt.check(message, NOW + 121) is Drop.STALE
