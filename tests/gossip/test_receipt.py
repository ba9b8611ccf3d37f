"""Gossip receipt checks: duplicates before crypto, signatures, replay window; no poisoning."""

from __future__ import annotations

import dataclasses

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from bzzz_edge.gossip import GAP_UNKNOWN, SEQ_WINDOW, Drop, GossipReceipt
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


# --- the sequence window against a reference model ------------------------------------------

_KEY = Ed25519PrivateKey.generate()


@settings(max_examples=100, deadline=None)
@given(seqs=st.lists(st.integers(1, 3 * SEQ_WINDOW), min_size=1, max_size=40),
       authenticated=st.booleans())
def test_sequence_window_matches_a_reference_model(seqs, authenticated):
    receipt = GossipReceipt(NET, replay_window=60, max_entries=4)  # the dedup cache forgets fast
    seen: set[int] = set()
    highest = None
    for seq in seqs:
        verdict = receipt.admit(_message(_KEY, seq=seq, body=b""), NOW,
                                authenticated=authenticated)
        if highest is not None and (seq in seen or seq <= highest - SEQ_WINDOW):
            assert verdict in (Drop.DUPLICATE, Drop.REPLAY)
            continue
        if highest is None or seq <= highest:
            expected_gap = 0
        elif seq - highest >= SEQ_WINDOW:
            expected_gap = GAP_UNKNOWN
        else:
            expected_gap = seq - highest - 1
        assert verdict == expected_gap
        if highest is not None and seq - highest >= SEQ_WINDOW:
            seen = {seq}  # the window restarts: older numbers are below it now
        seen.add(seq)
        highest = seq if highest is None else max(highest, seq)


def test_sequence_window_holds_over_long_runs():
    """Thousands of numbers in a row (the window's bits past its size are cut off now and
    then, not per message): what is in the window is still told apart, what is below refused."""
    receipt = GossipReceipt(NET, replay_window=60, max_entries=4)  # the dedup cache forgets fast
    skipped = set(range(3, 5 * SEQ_WINDOW, 97))
    last = 5 * SEQ_WINDOW
    for seq in range(1, last + 1):
        if seq not in skipped:
            assert receipt.admit(_message(_KEY, seq=seq, body=b""), NOW, authenticated=True) \
                == (1 if seq - 1 in skipped else 0)
    for age in range(SEQ_WINDOW + 3):
        seq = last - age
        verdict = receipt.admit(_message(_KEY, seq=seq, body=b""), NOW, authenticated=True)
        if age < SEQ_WINDOW and seq in skipped:
            assert verdict == 0  # a hole in the window: still welcome, once
        else:
            assert verdict in (Drop.DUPLICATE, Drop.REPLAY), (age, seq)
    # and its memory stays bounded: twice the window's bits at most
    assert all(w.seen.bit_length() <= 2 * SEQ_WINDOW for w in receipt._origins.values())


def test_streams_are_per_origin_and_topic():
    receipt = GossipReceipt(NET, replay_window=60)
    a = sign_gossip(_KEY, network_id=NET, seq=5, timestamp_ms=int(NOW * 1000), topic="a")
    b = sign_gossip(_KEY, network_id=NET, seq=5, timestamp_ms=int(NOW * 1000), topic="b")
    assert receipt.admit(a, NOW) == 0 and receipt.admit(b, NOW) == 0
