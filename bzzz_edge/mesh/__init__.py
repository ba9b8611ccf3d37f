"""The node's mesh of peers: connections, membership and discovery wired together (trio)."""

from ._service import PROTOCOL_VERSION, Mesh, PeerView

__all__ = ["PROTOCOL_VERSION", "Mesh", "PeerView"]
