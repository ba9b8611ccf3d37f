"""What the DHT shows people: its status and its routing table, from the core. No I/O.

``status`` is `bzzz-edge dht status` and /api/v1/dht (table size, records, operations in
flight, recent application lookups and the last gets' durations, every counter); ``routes``
lists the routing table's contacts, deepest bucket first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from ._config import DhtConfig
from ._contact import bucket_index
from ._node import DhtNode

__all__ = ["routes", "status"]


def status(core: DhtNode | None, *, node_id: bytes, config: DhtConfig, recent: Iterable[bool],
           counters: Counter[str], get_ms: Iterable[float] = ()) -> dict[str, Any]:
    """The core's figures; ``counters``: the shell's, added to the core's; ``get_ms``: the
    last application gets' durations in milliseconds, oldest first (``counters['gets']``
    counts them all)."""
    if core is None:
        return {"running": False}
    lookups = list(recent)
    return {
        "running": True,
        "node_id": node_id.hex(),
        "routing_table": len(core.table),
        "deepest_bucket": core.table.deepest_bucket(),
        "records_held": len(core.store),
        "own_records": len(core.own_records()),
        "pending_rpcs": core.pending_rpcs,
        "operations": core.operations,
        "recent_lookups": len(lookups),
        "recent_successes": sum(lookups),
        "counters": dict(core.counters + counters),
        "recent_get_ms": [round(ms, 3) for ms in get_ms],
        "k": config.k,
        "alpha": config.alpha,
    }


def routes(core: DhtNode | None, node_id: bytes) -> list[dict[str, Any]]:
    """The routing table's contacts: deepest bucket first, then by node ID."""
    if core is None:
        return []
    return sorted(({"node": c.node.hex(), "host": c.host, "port": c.port,
                    "bucket": bucket_index(node_id, c.node)}
                   for c in core.table.contacts()),
                  key=lambda r: (-int(r["bucket"]), str(r["node"])))
