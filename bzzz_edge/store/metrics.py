"""Storage statistics as Prometheus gauges. Does I/O (reads the store when scraped).

``bzzz_edge_store_addresses``, ``_versions``, ``_blobs``, ``_announced``, ``_raw_bytes``,
``_stored_bytes``, ``_compression_ratio``, ``_map_size_bytes``, ``_map_used_bytes``,
``_map_ceiling_bytes``, ``_full``, and the writer's running totals as gauges
(``bzzz_edge_store_writer_commits``, ``_writes``, ``_failed_writes``, ``_growths``,
``_inline_commits``).
"""

from __future__ import annotations

from collections.abc import Callable

from ..lifecycle.metrics import Metrics
from .content import ContentStore

__all__ = ["add_store_metrics"]

_GAUGES = (
    ("addresses", "addresses", "UCXL addresses stored"),
    ("versions", "versions", "UCXL versions stored, tombstones included"),
    ("blobs", "blobs", "distinct content blobs stored"),
    ("announced", "announced", "addresses this node announced"),
    ("raw_bytes", "raw_bytes", "bytes of distinct content before compression"),
    ("stored_bytes", "stored_bytes", "bytes the blobs take in the store"),
    ("compression_ratio", "ratio", "raw_bytes / stored_bytes"),
    ("map_size_bytes", "map_size", "size of the LMDB map"),
    ("map_used_bytes", "map_used", "bytes of the LMDB map in use"),
    ("map_ceiling_bytes", "map_ceiling", "largest the map may grow on this platform"),
    ("full", "full", "1 when the map is full at its ceiling and writes are refused"),
)
_WRITER = (("commits", "durable commits"), ("writes", "writes committed"),
           ("failed_writes", "writes that failed"), ("growths", "times the map grew"),
           ("inline_commits", "commits made in the caller's thread (write_now)"))


def add_store_metrics(metrics: Metrics, content: Callable[[], ContentStore | None]) -> None:
    """Register the gauges; ``content()`` is the node's content store, or None (not open)."""

    def stats() -> dict[str, float]:
        store = content()
        if store is None or store.closed:
            return {}
        figures = {k: float(v) for k, v in store.stats().items()}
        writer = store.writer_stats()
        figures.update({f"writer_{k}": float(getattr(writer, k)) for k, _ in _WRITER})
        return figures

    for name, key, doc in _GAUGES:
        metrics.callback_gauge(f"store_{name}", doc, [],
                               lambda key=key: _one(stats(), key))  # type: ignore[misc]
    for key, doc in _WRITER:
        metrics.callback_gauge(f"store_writer_{key}", f"Store writer: {doc}", [],
                               lambda key=key: _one(stats(), f"writer_{key}"))  # type: ignore[misc]


def _one(figures: dict[str, float], key: str) -> list[tuple[list[str], float]]:
    return [([], figures[key])] if key in figures else []
