"""A userspace Ethernet switch that holds every frame for a random delay. Does I/O.

The kernel here has no ``netem``, so one-way delay between network-namespace hosts comes from
this: run inside the LAN's switch namespace, with the host ports taken off the bridge, it opens
one ``AF_PACKET`` socket per port, learns which MAC address lives behind which port, and sends
each frame out (to the learnt port, or flooded for broadcast, multicast and unknown
destinations) ``delay`` seconds later, plus or minus up to ``jitter``, drawn uniformly and
independently per frame. Frames keep their order per pair of ports, as on one real path (a
queue does not reorder), so TCP sees latency, not reordering. ``--loss`` drops that fraction of
frames (the lab uses nftables on the kernel bridge for loss, this is for combinations).

Usage: ``python delay_switch.py --delay 0.2 --jitter 0.05 [--loss 0.1] [--seed N] p1 p2 ...``.
It prints ``ready`` once every port is open, then takes commands on stdin, so that a switch-over
cuts the LAN for milliseconds, not for a process start (a cut that long stalls TCP in
retransmission backoff and is itself a fault): ``go`` (after the ports left the bridge) starts
forwarding; ``drain`` (after they rejoined it) stops taking frames, sends those still held, and
exits. SIGTERM or SIGINT end it at once. The host ports
must have checksum and segmentation offloads off (``ethtool -K eth0 tx off tso off gso off``),
or frames arrive here unfinished or larger than the MTU.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import os
import random
import select
import signal
import socket
import sys
import time

_ETH_P_ALL = 0x0003
_PACKET_OUTGOING = 4
_MAX_FRAME = 65536


def _open(port: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind((port, 0))
    sock.setblocking(False)
    return sock


class Switch:
    """The forwarding state: learnt MACs, and frames waiting for their time."""

    def __init__(
        self, ports: list[str], delay: float, jitter: float, loss: float, seed: int
    ) -> None:
        self.sockets = {port: _open(port) for port in ports}
        self.by_fd = {sock.fileno(): port for port, sock in self.sockets.items()}
        self.delay, self.jitter, self.loss = delay, jitter, loss
        self.rng = random.Random(seed)
        self.macs: dict[bytes, str] = {}
        self.queue: list[tuple[float, int, str, bytes]] = []
        self.clock: dict[tuple[str, str], float] = {}
        self.counter = 0

    def receive(self, port: str, now: float) -> None:
        sock = self.sockets[port]
        while True:
            try:
                frame, address = sock.recvfrom(_MAX_FRAME)
            except BlockingIOError:
                return
            if address[2] == _PACKET_OUTGOING or len(frame) < 14:
                continue  # our own sends, seen again on the way out
            destination, source = frame[0:6], frame[6:12]
            if not source[0] & 1:
                self.macs[source] = port
            known = self.macs.get(destination)
            outs = [known] if known is not None and not destination[0] & 1 else list(self.sockets)
            for out in outs:
                if out != port:
                    self._schedule(port, out, frame, now)

    def _schedule(self, inp: str, out: str, frame: bytes, now: float) -> None:
        if self.loss and self.rng.random() < self.loss:
            return
        hold = self.delay + (self.rng.uniform(-self.jitter, self.jitter) if self.jitter else 0.0)
        due = max(now + max(hold, 0.0), self.clock.get((inp, out), 0.0))
        self.clock[(inp, out)] = due
        self.counter += 1
        heapq.heappush(self.queue, (due, self.counter, out, frame))

    def send_due(self, now: float) -> None:
        while self.queue and self.queue[0][0] <= now:
            _, _, out, frame = heapq.heappop(self.queue)
            # A port that went away, or a full queue: the frame is lost, as on a wire.
            with contextlib.suppress(OSError):
                self.sockets[out].send(frame)

    def discard(self, port: str) -> None:
        with contextlib.suppress(BlockingIOError):
            while True:
                self.sockets[port].recv(_MAX_FRAME)

    def run(self) -> None:
        """Forward from ``go`` until ``drain`` (or the end of input) and the held frames are out."""
        control = sys.stdin.fileno()
        watched = [*self.by_fd, control]
        forwarding = False
        while watched or self.queue:
            now = time.monotonic()
            timeout = max(0.0, self.queue[0][0] - now) if self.queue else None
            readable, _, _ = select.select(watched, [], [], timeout)
            for fd in readable:
                if fd == control:
                    commands = os.read(control, 256).split()
                    forwarding = commands[-1:] == [b"go"]
                    if not forwarding:  # drain, or the harness went away
                        watched = []
                elif forwarding:
                    self.receive(self.by_fd[fd], time.monotonic())
                else:
                    self.discard(self.by_fd[fd])  # the bridge still carries these
            self.send_due(time.monotonic())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--jitter", type=float, default=0.0)
    parser.add_argument("--loss", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("ports", nargs="+")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    switch = Switch(args.ports, args.delay, args.jitter, args.loss, args.seed)
    print("ready", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        switch.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
