"""Deterministic multi-node simulator for the sans-IO protocol cores. No I/O, no clock.

``Simulator`` drives any core that has ``handle``/``tick``/``next_deadline`` over a simulated
network with latency, jitter, loss, partitions, kills and restarts, in virtual time; a
``Wiring`` adapts a kind of core to it. The harnesses: ``MembershipCluster`` for the membership
core, ``PubsubCluster`` for the pub/sub router, ``RaftCluster`` for consensus and
``DhtCluster`` for the Kademlia cores.
"""

from __future__ import annotations

from bzzz_edge.sim._dht import DhtCluster
from bzzz_edge.sim._membership import MembershipCluster, MembershipWiring, sim_node_id
from bzzz_edge.sim._protocols import Core, Outgoing, Wiring
from bzzz_edge.sim._pubsub import Delivery, PubsubCluster, PubsubWiring
from bzzz_edge.sim._raft import RaftCluster
from bzzz_edge.sim._simulator import NetworkConfig, Observer, Simulator

__all__ = [
    "Core",
    "Delivery",
    "DhtCluster",
    "MembershipCluster",
    "MembershipWiring",
    "NetworkConfig",
    "Observer",
    "Outgoing",
    "PubsubCluster",
    "PubsubWiring",
    "RaftCluster",
    "Simulator",
    "Wiring",
    "sim_node_id",
]
