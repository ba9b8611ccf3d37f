"""The membership service in process: what it announces about itself."""

from __future__ import annotations

import secrets

import trio

from bzzz_edge.identity import Identity
from bzzz_edge.membership import lan
from bzzz_edge.membership.service import MembershipService
from bzzz_edge.net import ConnectionManager, NetLimits
from bzzz_edge.store import Store
from bzzz_edge.store.peers import PeerTable


def test_advertised_address_is_what_membership_announces(tmp_path):
    async def main():
        manager = ConnectionManager(Identity.generate(), secrets.token_bytes(32),
                                    listen=("0.0.0.0", 0), limits=NetLimits())
        table = PeerTable(Store(tmp_path / "store", map_size=2**24))
        service = MembershipService(manager, table, profile=lan(), advertise="127.0.0.1",
                                    meta={"name": "n"})
        async with trio.open_nursery() as nursery:
            port = await nursery.start(manager.run)
            await nursery.start(service.run)
            me = service.core.member(manager.node_id)
            assert (me.address.host, me.address.port) == ("127.0.0.1", port)
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_stored_incarnation_out_of_range_does_not_stop_a_start(tmp_path):
    async def main():
        store = Store(tmp_path / "store", map_size=2**24)
        store.put_meta("incarnation", 2**63)  # what a hostile claim once made nodes store
        manager = ConnectionManager(Identity.generate(), secrets.token_bytes(32),
                                    listen=("127.0.0.1", 0), limits=NetLimits())
        service = MembershipService(manager, PeerTable(store), profile=lan(), advertise="",
                                    meta={})
        async with trio.open_nursery() as nursery:
            await nursery.start(manager.run)
            await nursery.start(service.run)
            assert service.core.incarnation == 0
            assert store.get_meta("incarnation", None) == 0
            nursery.cancel_scope.cancel()

    trio.run(main)
