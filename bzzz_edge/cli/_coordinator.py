"""`bzzz-edge coordinator`: who coordinates, in which term, the voters and learners and each
member's replication progress, asked of the running node. Does I/O (HTTP through ``NodeApi``).

With ``--json`` the node's answer as is: at least ``leader`` (the node ID as `bzzz-edge id`
prints it, or null), ``term``, ``commit_index``, ``voters`` and ``learners`` (node IDs).
"""

from __future__ import annotations

import argparse
import json
import sys

from ._common import NodeApi

__all__ = ["cmd_coordinator"]


def cmd_coordinator(args: argparse.Namespace) -> int:
    status = NodeApi(args).get("/api/v1/coordination")
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    print(f"coordinator  {status['leader'] or 'none (no quorum, or an election is on)'}")
    print(f"term         {status['term']}   commit index {status['commit_index']}   "
          f"this node: {status['state']}")
    progress = status.get("progress", {})
    for kind in ("voters", "learners"):
        print(f"{kind:<12} {len(status[kind])}")
        for node in status[kind]:
            mark = " (coordinator)" if node == status["leader"] else ""
            row = progress.get(node)
            shown = f"  match {row['match']}, {row['state']}" if row else ""
            print(f"  {node}{mark}{shown}")
    sys.stdout.flush()
    return 0
