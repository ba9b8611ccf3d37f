"""``bzzz-edge agents [--json]``: every node's availability, roles and capabilities, as the
running node's directory holds them (``/api/v1/agents``). Does I/O (HTTP, stdout).

The table: node, name, roles, capabilities, load (1 min), memory in use, tasks held/capacity,
seconds since last heard, and membership's status when it is not alive. ``--json`` prints the
API's list of agents as it is.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._common import NodeApi

__all__ = ["add_agents_command", "cmd_agents"]


def add_agents_command(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``agents`` on the top-level subparsers ``sub``."""
    text = ("list every node's availability, roles and capabilities (this node's directory "
            "of agents, from their broadcasts)")
    p = sub.add_parser("agents", parents=parents, help=text, description=text)
    p.set_defaults(func=cmd_agents)
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _words(items: Any, width: int) -> str:
    if items is None:
        return "?"  # not heard yet
    text = ",".join(items) or "-"
    return text if len(text) <= width else text[:width - 1] + "…"


def cmd_agents(args: argparse.Namespace) -> int:
    agents = NodeApi(args).get("/api/v1/agents")["agents"]
    if args.json:
        print(json.dumps(agents, indent=2))
        return 0
    if not agents:
        print("no agents heard yet")
        return 0
    print(f"{'NODE':<17}{'NAME':<16}{'ROLES':<22}{'CAPABILITIES':<22}{'LOAD':>6}{'MEM':>6}"
          f"{'TASKS':>8}  HEARD")
    for a in agents:
        node = a["node_id"][:15] + ("*" if a["self"] else "")
        tasks = f"{a['tasks_held']}/{a['capacity']}"
        status = "" if a["status"] == "alive" else f" ({a['status']})"
        print(f"{node:<17}{a['name'][:15]:<16}{_words(a['roles'], 21):<22}"
              f"{_words(a['capabilities'], 21):<22}{a['load'][0]:>6.2f}"
              f"{a['memory_percent']:>5.0f}%{tasks:>8}  {a['last_heard_s']:.0f}s ago{status}")
    return 0
