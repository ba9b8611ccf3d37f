"""Gossip: origin-signed messages on topics. The checks here are sans-IO; ``service`` is trio.

Today a message is flooded to the directly connected peers, one hop; the relaying pub/sub
router (per-topic meshes, lazy repair) grows here. See ``_receipt`` for what a node checks
before it accepts a message and ``_budget`` for what one peer may make it check.
"""

from bzzz_edge.gossip._budget import PeerBudget
from bzzz_edge.gossip._receipt import SEQ_WINDOW, Drop, GossipReceipt

__all__ = ["SEQ_WINDOW", "Drop", "GossipReceipt", "PeerBudget"]
