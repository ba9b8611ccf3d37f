"""The pub/sub service's dispatch: actions and feed events go to handlers by type, and a type
without one is counted and logged, not dropped in silence."""

from __future__ import annotations

import logging
import random
import secrets

import trio
import trio.testing

from bzzz_edge import gossip as core
from bzzz_edge.config import load_config
from bzzz_edge.gossip.service import OUTBOUND_SHARE, GossipService
from bzzz_edge.identity import Identity, network_id
from bzzz_edge.net import ConnectionManager, NetLimits
from bzzz_edge.peering import gossip_config
from bzzz_edge.wire.envelope import DirectMessage, sign_gossip
from bzzz_edge.wire.types import PUBSUB_CONTROL

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


def test_gossip_sent_to_one_peer_is_capped_below_its_budget_and_sent_in_bulk():
    # A receiver checks ``peer_message_rate`` messages a second from one sender (bursts of
    # twice that) and charges the excess as a flood: we send one peer at most
    # ``OUTBOUND_SHARE`` of that a second (bursts of one second's worth), in bulk (best
    # effort: half its outbox at most). The excess is a queue drop; control is never capped.
    async def main(clock):
        key = secrets.token_bytes(32)
        identity = Identity.generate()
        manager = ConnectionManager(identity, key, listen=("127.0.0.1", 0), limits=NetLimits())
        router = gossip_config(_CONFIG)
        service = GossipService(manager, identity, network_id(key),
                                settings=_CONFIG.settings.gossip, router=router,
                                rng=random.Random(1))
        sent = []
        manager.send = lambda peer, payload, **how: sent.append((peer, how)) or True
        message = sign_gossip(identity.private_key, network_id=network_id(key), seq=1,
                              timestamp_ms=0, topic="t", body=b"x")
        control = DirectMessage(*PUBSUB_CONTROL.key, b"")
        a, b = secrets.token_bytes(32), secrets.token_bytes(32)
        rate = router.peer_message_rate
        burst = int(rate)
        service._perform([core.Send(a, message)] * (burst + 100) + [core.Send(a, control)] * 3
                         + [core.Send(b, message)] * 10)
        to_a = [how for peer, how in sent if peer == a]
        assert len(to_a) == burst + 3  # the burst and the control messages
        assert to_a[0] == {"bulk": True} and to_a[-1] == {"bulk": False}
        assert sum(1 for peer, _ in sent if peer == b) == 10  # a budget per peer
        assert service.counters()["gossip_queue_drops"] == 100
        clock.jump(1.0)  # a second later: the share of a second more
        sent.clear()
        service._perform([core.Send(a, message)] * burst)
        assert len(sent) == int(OUTBOUND_SHARE * rate)
        assert service.counters()["gossip_queue_drops"] == 100 + burst - len(sent)

    clock = trio.testing.MockClock()
    trio.run(main, clock, clock=clock)
