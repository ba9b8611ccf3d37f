"""systemd notification protocol (sd_notify): READY, STOPPING, STATUS and the watchdog. Does I/O.

The protocol is one datagram to the unix socket named by $NOTIFY_SOCKET; it is small enough that
a library would add more than it saves. Without $NOTIFY_SOCKET every call does nothing.
"""

from __future__ import annotations

import logging
import socket

__all__ = ["Notifier"]

log = logging.getLogger(__name__)


class Notifier:
    """Sends state lines to systemd (or to a test's socket) when NOTIFY_SOCKET is set."""

    def __init__(self, address: str | None) -> None:
        self._address: str | None = None
        self._sock: socket.socket | None = None
        if address:
            # "@name" is an abstract socket: a leading NUL byte on the wire.
            self._address = "\0" + address[1:] if address.startswith("@") else address
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def notify(self, *lines: str) -> None:
        if self._sock is None or self._address is None:
            return
        try:
            self._sock.sendto("\n".join(lines).encode(), self._address)
        except OSError as exc:
            log.debug("sd_notify to %s failed: %s", self._address, exc)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
