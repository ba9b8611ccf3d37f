"""Runs MdnsDiscovery alone and reports on stdout as JSON lines. Does network I/O.

Usage: mdns_probe.py --fingerprint FP --port PORT [--node-id HEX] [--name NAME]
                     [--interface IP ...] [--probe]

Lines (``t`` is time.monotonic(), comparable with the parent's on Linux):
  {"event": "start", "t": ...}                      before importing trio and zeroconf
  {"event": "run", "t": ...}                        as MdnsDiscovery.run begins
  {"event": "ready", "node_id": hex, "instance": name, "t": ...}
  {"event": "found", "peer_id": hex, "addresses": [[ip, port], ...], "protocol_version": n,
   "name": s, "t": ...}
  {"event": "lost", "peer_id": hex, "t": ...}
  {"event": "stats", "ignored_other_network": n, "malformed": n, "t": ...}   when they change
  {"event": "stopped", "t": ...}                    after a clean stop on SIGTERM or SIGINT
"""

import json
import sys
import time


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields, "t": time.monotonic()}), flush=True)


emit("start")

import argparse  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402

import trio  # noqa: E402

from bzzz_edge.discovery import MdnsDiscovery, PeerFound, PeerLost  # noqa: E402

# Counters have no events of their own; sampling them often enough is all a test needs.
STATS_INTERVAL = 0.02


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fingerprint", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--node-id", default=None, help="64 hex characters; random if absent")
    parser.add_argument("--name", default="")
    parser.add_argument("--interface", action="append", default=None)
    parser.add_argument("--probe", action="store_true", help="probe the name first (RFC 6762)")
    return parser.parse_args()


async def report_events(discovery: MdnsDiscovery) -> None:
    async for event in discovery.events:
        if isinstance(event, PeerFound):
            emit(
                "found",
                peer_id=event.peer_id.hex(),
                addresses=event.addresses,
                protocol_version=event.protocol_version,
                name=event.name,
            )
        elif isinstance(event, PeerLost):
            emit("lost", peer_id=event.peer_id.hex())


async def report_stats(discovery: MdnsDiscovery) -> None:
    last = None
    while True:
        now = (discovery.ignored_other_network, discovery.malformed)
        if now != last:
            emit("stats", ignored_other_network=now[0], malformed=now[1])
            last = now
        await trio.sleep(STATS_INTERVAL)


async def main() -> None:
    args = parse_args()
    node_id = bytes.fromhex(args.node_id) if args.node_id else os.urandom(32)
    discovery = MdnsDiscovery(node_id, args.port, args.fingerprint, name=args.name,
                              interfaces=args.interface, probe=args.probe)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(report_events, discovery)
            emit("run")
            await nursery.start(discovery.run)
            emit("ready", node_id=node_id.hex(), instance=discovery.registered_name)
            nursery.start_soon(report_stats, discovery)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break
    emit("stopped")


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    trio.run(main)
