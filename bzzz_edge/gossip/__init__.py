"""Gossip pub/sub: origin-signed messages on topics. No I/O: what this package exports is
sans-IO; ``service`` (not imported here) is the driver that performs the router's actions.

``Router`` is the pub/sub router core (per-topic meshes, flood publish from the origin, lazy
repair through IHAVE/IWANT, penalties and bans); its contract (events in, actions out, clocks)
is the docstring of ``_events``. ``_receipt`` is what a node checks before it accepts a
message, ``_budget`` what one peer may make it check, ``_config`` the tunables and their
``lan``/``local`` profiles, ``_control`` the control message codec.
"""

from bzzz_edge.gossip._budget import PeerBudget
from bzzz_edge.gossip._config import PROFILES, RouterConfig, lan, local, profile
from bzzz_edge.gossip._control import Control, decode_control, encode_control
from bzzz_edge.gossip._events import (
    GAP_UNKNOWN,
    Action,
    Ban,
    Deliver,
    Event,
    Offence,
    PeerConnected,
    PeerDisconnected,
    Penalise,
    Publish,
    Received,
    Send,
    SetTopicPolicy,
    Subscribe,
    TopicStats,
    Unsubscribe,
    Validation,
    Validator,
    WallClock,
)
from bzzz_edge.gossip._receipt import SEQ_WINDOW, Drop, GossipReceipt
from bzzz_edge.gossip._router import Router

__all__ = [
    "GAP_UNKNOWN",
    "PROFILES",
    "SEQ_WINDOW",
    "Action",
    "Ban",
    "Control",
    "Deliver",
    "Drop",
    "Event",
    "GossipReceipt",
    "Offence",
    "PeerBudget",
    "PeerConnected",
    "PeerDisconnected",
    "Penalise",
    "Publish",
    "Received",
    "Router",
    "RouterConfig",
    "Send",
    "SetTopicPolicy",
    "Subscribe",
    "TopicStats",
    "Unsubscribe",
    "Validation",
    "Validator",
    "WallClock",
    "decode_control",
    "encode_control",
    "lan",
    "local",
    "profile",
]
