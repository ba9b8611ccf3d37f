"""Logging set-up: readable lines on a terminal, JSON lines for journald and collectors.

Does I/O: writes to stderr.
A filter replaces any configured secret (API token, network key) that finds
its way into a message with ``[redacted]``, as a second line of defence behind the rule that
code never logs key material in the first place.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable

__all__ = ["JsonFormatter", "SecretFilter", "TextFormatter", "set_level", "setup_logging"]

_ROOT = "bzzz_edge"
#: Fields an event may carry besides its name.
EVENT_FIELDS = ("peer", "status", "reason", "incarnation")
_HANDLER_NAME = "bzzz-edge"


class TextFormatter(logging.Formatter):
    """``2026-11-23T19:30:00.123Z INFO  bzzz_edge.node: message``"""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = (f"{stamp}.{int(record.msecs):03d}Z {record.levelname:<7} "
                f"{record.name}: {record.getMessage()}")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, msg; ``event`` and its fields when the record
    is a structured event; exc when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        # Structured events (``extra={"event": ..., ...}``): what tests and collectors match
        # on, rather than on a message's wording.
        event = getattr(record, "event", None)
        if event is not None:
            entry["event"] = event
            entry.update({k: getattr(record, k) for k in EVENT_FIELDS if hasattr(record, k)})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class SecretFilter(logging.Filter):
    """Redact known secret strings from every record that passes the handler."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if len(s) >= 8]

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            redacted = message
            for secret in self.secrets:
                redacted = redacted.replace(secret, "[redacted]")
            if redacted != message:
                record.msg, record.args = redacted, None
        return True


def setup_logging(level: str, fmt: str, secrets: Iterable[str] = ()) -> None:
    """Configure the package logger (idempotent: a second call replaces the handler)."""
    if fmt == "auto":
        fmt = "text" if sys.stderr.isatty() else "json"
    logger = logging.getLogger(_ROOT)
    for handler in list(logger.handlers):
        if handler.get_name() == _HANDLER_NAME:
            logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(SecretFilter(secrets))
    logger.addHandler(handler)
    logger.propagate = False
    set_level(level)


def set_level(level: str) -> None:
    logging.getLogger(_ROOT).setLevel(level.upper())
