"""Logging set-up: readable lines on a terminal, JSON lines for journald and collectors.

Does I/O: writes to stderr.
A filter replaces any configured secret (API token, network key) that finds
its way into a message with ``[redacted]``, as a second line of defence behind the rule that
code never logs key material in the first place.

``broadcast`` copies every record, as a JSON line, to subscribers (the API's ``monitor``
streams), each at its own level: the package logger's level is the lowest of the configured
level and every subscriber's, while stderr keeps the configured one.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable

__all__ = [
    "LEVELS",
    "JsonFormatter",
    "LogBroadcast",
    "SecretFilter",
    "TextFormatter",
    "broadcast",
    "set_level",
    "setup_logging",
]

LEVELS = ("debug", "info", "warning", "error")

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


class LogBroadcast(logging.Handler):
    """Hands each record, formatted as a JSON line, to the subscribers whose level it meets.

    ``deliver`` callbacks run in whatever thread logged the record; they must not block (the
    API's hand the line to the event loop and drop it when the client reads too slowly).
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._subscribers: dict[int, tuple[int, Callable[[str], None]]] = {}
        self._next = 0
        self._lock_subs = threading.Lock()
        self._formatter = JsonFormatter()

    def subscribe(self, level: str, deliver: Callable[[str], None]) -> Callable[[], None]:
        """Send lines at ``level`` and above to ``deliver``; returns the unsubscribe function."""
        with self._lock_subs:
            key, self._next = self._next, self._next + 1
            self._subscribers[key] = (logging.getLevelName(level.upper()), deliver)
        _apply_levels()

        def unsubscribe() -> None:
            with self._lock_subs:
                self._subscribers.pop(key, None)
            _apply_levels()

        return unsubscribe

    @property
    def lowest_level(self) -> int | None:
        with self._lock_subs:
            return min((lvl for lvl, _ in self._subscribers.values()), default=None)

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock_subs:
            wanted = [d for lvl, d in self._subscribers.values() if record.levelno >= lvl]
        if wanted:
            line = self._formatter.format(record)
            for deliver in wanted:
                deliver(line)


broadcast = LogBroadcast()
_configured = logging.INFO


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
    for old_filter in list(broadcast.filters):
        broadcast.removeFilter(old_filter)
    broadcast.addFilter(SecretFilter(secrets))
    if broadcast not in logger.handlers:
        logger.addHandler(broadcast)
    logger.propagate = False
    set_level(level)


def set_level(level: str) -> None:
    """Set the configured level (stderr); monitors may still lower the logger's own."""
    global _configured
    _configured = logging.getLevelName(level.upper())
    _apply_levels()


def _apply_levels() -> None:
    logger = logging.getLogger(_ROOT)
    for handler in logger.handlers:
        if handler.get_name() == _HANDLER_NAME:
            handler.setLevel(_configured)
    lowest = broadcast.lowest_level
    logger.setLevel(_configured if lowest is None else min(lowest, _configured))
