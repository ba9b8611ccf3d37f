"""The pub/sub service's dispatch: actions and feed events go to handlers by type, and a type
without one is counted and logged, not dropped in silence."""

from __future__ import annotations

import logging
import random
import secrets

import trio

from bzzz_edge import gossip as core
from bzzz_edge.config import load_config
from bzzz_edge.gossip.service import GossipService
from bzzz_edge.identity import Identity, network_id
from bzzz_edge.net import ConnectionManager, NetLimits
from bzzz_edge.peering import gossip_config

_CONFIG = load_config(environ={}, flags={"node.profile": "local"})


class _Stray:
    """Something no handler is registered for."""


def test_actions_without_a_handler_are_counted_and_logged_once_loudly(caplog):
    async def main():
        key = secrets.token_bytes(32)
        identity = Identity.generate()
        manager = ConnectionManager(identity, key, listen=("127.0.0.1", 0), limits=NetLimits())
        service = GossipService(manager, identity, network_id(key),
                                settings=_CONFIG.settings.gossip,
                                router=gossip_config(_CONFIG), rng=random.Random(1))
        assert service.counters()["gossip_unhandled_types"] == 0
        peer = secrets.token_bytes(32)
        offence = next(iter(core.Offence))
        with caplog.at_level(logging.DEBUG, logger="bzzz_edge.gossip.service"):
            service._perform([_Stray(), core.Penalise(peer, offence), _Stray()])
        assert service.counters()["gossip_unhandled_types"] == 2
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING
                    and "_Stray" in r.getMessage()]
        assert len(warnings) == 1
        # The known action between them still went through to the guard.
        assert manager.guard.strikes(peer, trio.current_time()) == 1
        assert service.counters()[f"gossip_penalised_{offence.value}"] == 1
        assert manager.guard.counters["bans"] == 0
        service._perform([core.Ban(peer, offence)])  # as many strikes as a ban takes
        assert manager.guard.counters["bans"] == 1

    trio.run(main)
