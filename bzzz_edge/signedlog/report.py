"""What `log show` and `log verify` print, from a ``LogReader``: shared by the API (a running
node) and the CLI (a stopped node's data dir). Does I/O (reads the store).
"""

from __future__ import annotations

from typing import Any

from ..errors import DecodeError, SignatureError
from ..ids import format_node_id
from ._chain import BadEntry
from ._codec import decode_entry
from .storage import LogReader, NoSuchLog, verify_stored

__all__ = ["MAX_SHOW", "logs_held", "proof", "show", "verify"]

MAX_SHOW = 10_000


def show(reader: LogReader, author: bytes, limit: int) -> dict[str, Any]:
    """The last ``limit`` entries of ``author``'s log (oldest first), with its head and state.

    Raises:
        NoSuchLog: no such log here.
    """
    head = reader.head(author)
    if head is None:
        raise NoSuchLog(f"no log of {format_node_id(author)} is held here")
    limit = max(0, min(limit, MAX_SHOW))
    start = max(0, head.length - limit)
    key = head.public_key
    entries = []
    for index, encoded in reader.entries(author, start):
        if index >= head.length:
            break
        try:
            entries.append(decode_entry(encoded, key).as_dict())
        except (DecodeError, SignatureError) as exc:
            entries.append({"index": index, "error": str(exc)})
    return {"node_id": format_node_id(author), "length": head.length,
            "root": head.root.hex(), "head_timestamp_ms": head.timestamp_ms,
            "corrupt": bool(reader.forks(author)),
            "forks": [f.as_dict() for f in reader.forks(author)], "entries": entries}


def verify(reader: LogReader, author: bytes, *, workers: int = 1) -> dict[str, Any]:
    """``{"ok": True, "length": n, ...}`` or ``{"ok": False, "index": i, "reason": ...}``;
    ``workers``: threads for the signatures of a long log (see ``verify_stored``).

    Raises:
        NoSuchLog: no such log here.
    """
    try:
        result = verify_stored(reader, author, workers=workers)
    except NoSuchLog:
        raise NoSuchLog(f"no log of {format_node_id(author)} is held here") from None
    except BadEntry as exc:
        return {"ok": False, "node_id": format_node_id(author), "index": exc.index,
                "reason": exc.reason}
    return {"ok": True, "node_id": format_node_id(author), "length": result.length,
            "root": result.root.hex()}


def logs_held(reader: LogReader) -> list[dict[str, Any]]:
    """Every log held here: whose, how long, corrupt or not."""
    out = []
    for author in reader.authors():
        head = reader.head(author)
        out.append({"node_id": format_node_id(author),
                    "length": 0 if head is None else head.length,
                    "corrupt": bool(reader.forks(author))})
    return out


def proof(reader: LogReader, author: bytes, index: int) -> dict[str, Any]:
    """One entry, its inclusion proof and the signed head it is proven under (hex): all a
    client needs to check it (``signedlog.verify_entry``) without the rest of the log.

    Raises:
        NoSuchLog: no such log or no such entry here.
    """
    head = reader.head(author)
    encoded = reader.entry(author, index) if head is not None and index < head.length else None
    if head is None or encoded is None:
        raise NoSuchLog(f"no entry {index} in a log of {format_node_id(author)} held here")
    return {"entry": encoded.hex(), "proof": [h.hex() for h in reader.proof(author, index,
                                                                             head.length)],
            "head": head.encoded.hex()}
