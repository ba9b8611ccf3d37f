"""The bookkeeping between zeroconf's service changes and PeerFound/PeerLost events."""

from __future__ import annotations

import logging

import pytest

from bzzz_edge.discovery import Announcement, PeerFound, PeerLost, encode_txt
from bzzz_edge.discovery._book import PeerBook, Resolved

OWN = b"\x01" * 32
PEER = b"\x02" * 32
OTHER = b"\x03" * 32
FP = "0123456789abcdef"


def resolved(node_id: bytes = PEER, *, fingerprint: str = FP, port: int = 7000,
             ips: tuple[str, ...] = ("10.77.0.2",), name: str = "", version: int = 1) -> Resolved:
    txt = encode_txt(Announcement(node_id, version, fingerprint, name))
    return Resolved(txt, port, ips)


def found(node_id: bytes = PEER, port: int = 7000, ips: tuple[str, ...] = ("10.77.0.2",),
          name: str = "", version: int = 1) -> PeerFound:
    return PeerFound(node_id, tuple((ip, port) for ip in ips), version, name)


@pytest.fixture
def book() -> PeerBook:
    return PeerBook(OWN, FP)


def test_resolved_peer_of_our_network_is_found_with_every_address(book: PeerBook) -> None:
    gen = book.changed("a")
    result = resolved(ips=("10.77.0.2", "192.168.1.9"), name="pi", version=2)
    assert book.resolved("a", gen, result) == [
        found(ips=("10.77.0.2", "192.168.1.9"), name="pi", version=2)]
    assert book.peers() == {PEER: found(ips=("10.77.0.2", "192.168.1.9"), name="pi", version=2)}


def test_repeated_identical_resolution_emits_nothing_new(book: PeerBook) -> None:
    assert book.resolved("a", book.changed("a"), resolved()) == [found()]
    assert book.resolved("a", book.changed("a"), resolved()) == []


def test_changed_addresses_are_found_again(book: PeerBook) -> None:
    book.resolved("a", book.changed("a"), resolved())
    assert book.resolved("a", book.changed("a"), resolved(port=7001)) == [found(port=7001)]


def test_removed_peer_is_lost_once(book: PeerBook) -> None:
    book.resolved("a", book.changed("a"), resolved())
    assert book.removed("a") == [PeerLost(PEER)]
    assert book.removed("a") == []
    assert book.peers() == {}


def test_removal_of_a_name_never_found_emits_nothing(book: PeerBook) -> None:
    book.changed("a")
    assert book.removed("a") == []


def test_resolution_overtaken_by_removal_is_dropped(book: PeerBook) -> None:
    gen = book.changed("a")
    assert book.removed("a") == []
    assert book.resolved("a", gen, resolved()) == []
    assert book.peers() == {}


def test_resolution_overtaken_by_newer_change_is_dropped(book: PeerBook) -> None:
    old = book.changed("a")
    new = book.changed("a")
    assert book.resolved("a", new, resolved(port=7001)) == [found(port=7001)]
    assert book.resolved("a", old, resolved(port=7000)) == []
    assert book.peers()[PEER].addresses == (("10.77.0.2", 7001),)


def test_resolution_from_before_a_removal_does_not_revive_a_readded_name(book: PeerBook) -> None:
    stale = book.changed("a")
    book.removed("a")
    fresh = book.changed("a")
    assert book.resolved("a", stale, resolved(port=1)) == []
    assert book.resolved("a", fresh, resolved(port=2)) == [found(port=2)]


def test_our_own_service_is_ignored(book: PeerBook) -> None:
    assert book.resolved("me", book.changed("me"), resolved(OWN)) == []
    assert book.ignored_self == 1
    assert book.peers() == {}


def test_other_network_is_ignored_and_counted_once_per_name(book: PeerBook) -> None:
    for _ in range(3):
        assert book.resolved("x", book.changed("x"), resolved(fingerprint="ffff")) == []
    book.resolved("y", book.changed("y"), resolved(OTHER, fingerprint="eeee"))
    assert book.ignored_other_network == 2
    assert book.peers() == {}


def test_peer_switching_to_another_network_is_lost(book: PeerBook) -> None:
    book.resolved("a", book.changed("a"), resolved())
    assert book.resolved("a", book.changed("a"), resolved(fingerprint="ffff")) == [PeerLost(PEER)]
    assert book.ignored_other_network == 1


def test_malformed_records_are_counted_and_logged_loudly_only_once(
        book: PeerBook, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="bzzz_edge.discovery._book")
    bad = Resolved({b"id": b"zz", b"v": b"1", b"net": FP.encode()}, 7000, ("10.0.0.1",))
    for name in ("b1", "b2", "b3"):
        assert book.resolved(name, book.changed(name), bad) == []
    assert book.malformed == 3
    levels = [r.levelno for r in caplog.records if "malformed" in r.getMessage()]
    assert levels == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    assert "'id' must be 64 lowercase hex" in caplog.records[0].getMessage()


@pytest.mark.parametrize("result", [
    Resolved(encode_txt(Announcement(PEER, 1, FP)), None, ("10.0.0.1",)),
    Resolved(encode_txt(Announcement(PEER, 1, FP)), 0, ("10.0.0.1",)),
    Resolved(encode_txt(Announcement(PEER, 1, FP)), 7000, ()),
])
def test_service_without_port_or_address_is_malformed(book: PeerBook, result: Resolved) -> None:
    assert book.resolved("a", book.changed("a"), result) == []
    assert book.malformed == 1


def test_peer_turning_malformed_is_lost(book: PeerBook) -> None:
    book.resolved("a", book.changed("a"), resolved())
    bad = Resolved({b"id": PEER.hex().encode()}, 7000, ("10.0.0.1",))
    assert book.resolved("a", book.changed("a"), bad) == [PeerLost(PEER)]


def test_unresolved_keeps_what_we_knew(book: PeerBook) -> None:
    book.resolved("a", book.changed("a"), resolved())
    assert book.resolved("a", book.changed("a"), None) == []
    assert book.unresolved == 1
    assert PEER in book.peers()


def test_peer_under_two_names_is_lost_only_with_its_last_name(book: PeerBook) -> None:
    book.resolved("old", book.changed("old"), resolved(port=7000))
    book.resolved("new", book.changed("new"), resolved(port=7001))
    # The name that went was the latest word on the peer: the survivor's record is restated.
    assert book.removed("new") == [found(port=7000)]
    assert book.removed("old") == [PeerLost(PEER)]


def test_name_reused_by_another_node_loses_the_first(book: PeerBook) -> None:
    book.resolved("a", book.changed("a"), resolved(PEER))
    assert book.resolved("a", book.changed("a"), resolved(OTHER)) == [PeerLost(PEER),
                                                                      found(OTHER)]


@pytest.mark.parametrize("module", ["_records.py", "_book.py"])
def test_pure_parts_import_no_io_libraries(module: str) -> None:
    import ast
    from pathlib import Path

    import bzzz_edge.discovery

    source = Path(bzzz_edge.discovery.__file__).with_name(module).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"trio", "zeroconf", "socket", "ifaddr", "time", "asyncio", "lmdb"}
