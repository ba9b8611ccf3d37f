"""``bzzz-edge task announce|list|show|claim|progress|complete|fail|release``: tasks through
the running node's API (``/api/v1/tasks``). Does I/O (HTTP, files, stdout).

``announce`` prints the new task's ID alone on one line (what the other commands take).
``show --json`` prints at least ``id``, ``state``, ``owner`` (the node ID as `bzzz-edge id`
prints it, or null) and ``address``. Exit codes of ``claim``: 0 this node won (its ID is
printed), 1 another node holds the task (the winner's ID is printed, a line on stderr says
so), 2 refused (the reason on stderr: unknown or finished task, role, capabilities, capacity,
scope...) or not decided (no coordinator, timeout). The other commands exit 0 when done and 2
when refused, with the reason.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import BzzzError
from ._common import NodeApi, error_text

__all__ = ["add_task_commands"]

_STATES = ("announced", "claimed", "in_progress", "completed", "failed", "reassigned")
_TIMEOUT = 60.0


def add_task_commands(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``task ...`` on the top-level subparsers ``sub``."""
    task = sub.add_parser("task", help="announce, list, show, claim and work on tasks",
                          description="tasks decided by the coordination log: exactly one "
                          "node wins each claim, every node learns which")
    verbs = task.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, fn: Any, text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = verbs.add_parser(name, parents=parents, help=text,
                                                      description=text)
        p.set_defaults(func=fn)
        return p

    p = verb("announce", _announce, "announce a task; prints its ID alone")
    p.add_argument("title", metavar="TITLE")
    p.add_argument("--description", default="", help="what is to be done")
    p.add_argument("--role", default="", help="the role a claimant must hold")
    p.add_argument("--cap", action="append", default=[], metavar="C",
                   help="a capability a claimant must have (repeatable)")
    p.add_argument("--priority", type=int, default=0, help="higher first (default 0)")
    p.add_argument("--scope", action="append", default=[], metavar="GLOB",
                   help="a directory scope, covered by the claimant's role patterns "
                   "(repeatable)")
    p.add_argument("--deadline", type=float, metavar="S",
                   help="seconds the owner has from its claim; then the task is released")
    p.add_argument("--address", metavar="UCXL", help="the task's UCXL address")
    p = verb("list", _list, "list tasks, highest priority first")
    p.add_argument("--state", choices=_STATES)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = verb("show", _show, "show one task and its history")
    p.add_argument("id", metavar="ID")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = verb("claim", _claim, "claim a task: exit 0 won, 1 lost (winner printed), 2 refused")
    p.add_argument("id", metavar="ID")
    p = verb("progress", _progress, "report progress on a task this node holds")
    p.add_argument("id", metavar="ID")
    p.add_argument("text", metavar="TEXT")
    p = verb("complete", _complete, "complete a task this node holds")
    p.add_argument("id", metavar="ID")
    p.add_argument("--result", metavar="FILE",
                   help="store FILE's bytes as the result (UCXL content; '-': stdin)")
    p = verb("fail", _fail, "fail a task this node holds")
    p.add_argument("id", metavar="ID")
    p.add_argument("reason", metavar="REASON")
    p = verb("release", _release, "give a task up so another node may claim it")
    p.add_argument("id", metavar="ID")


def _post(args: argparse.Namespace, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    return NodeApi(args).call("POST", path, body, timeout=_TIMEOUT)


def _refused(status: int, answer: Any) -> int:
    """Print why a command was refused; exit 2."""
    reason = answer.get("reason") if isinstance(answer, dict) else None
    prefix = f"{reason}: " if reason else ""
    print(f"bzzz-edge: refused: {prefix}{error_text(answer, status)}", file=sys.stderr)
    return 2


def _command(args: argparse.Namespace, op: str, body: dict[str, Any] | None = None) -> int:
    status, answer = _post(args, f"/api/v1/tasks/{args.id}/{op}", body or {})
    if status != 200:
        return _refused(status, answer)
    print(f"{answer['id']} {answer['state']}")
    return 0


def _announce(args: argparse.Namespace) -> int:
    body = {"title": args.title, "description": args.description, "role": args.role,
            "capabilities": args.cap, "priority": args.priority, "scopes": args.scope,
            "deadline": args.deadline, "address": args.address}
    status, answer = _post(args, "/api/v1/tasks", body)
    if status != 201:
        return _refused(status, answer)
    print(answer["id"])
    return 0


def _list(args: argparse.Namespace) -> int:
    path = "/api/v1/tasks" + (f"?state={args.state}" if args.state else "")
    tasks = NodeApi(args).get(path)["tasks"]
    if args.json:
        print(json.dumps(tasks, indent=2))
        return 0
    if not tasks:
        print("no tasks")
    for t in tasks:
        owner = t["owner"][:15] if t["owner"] else "-"
        print(f"{t['id']}  {t['state']:<11}  p{t['priority']:<4} {owner:<15}  {t['title']}")
    return 0


def _show(args: argparse.Namespace) -> int:
    task = NodeApi(args).get(f"/api/v1/tasks/{args.id}")
    if args.json:
        print(json.dumps(task, indent=2))
        return 0
    for key in ("id", "title", "state", "owner", "address", "role", "capabilities", "scopes",
                "priority", "deadline", "due_at", "result", "description"):
        value = task.get(key)
        if value not in (None, "", []):
            shown = ", ".join(value) if isinstance(value, list) else value
            print(f"{key:<13}{shown}")
    print("history")
    for h in task["history"]:
        who = h["node"][:15] if h["node"] else "-"
        text = f"  {h['text']}" if h["text"] else ""
        print(f"  #{h['index']:<6} {h['event']:<10} {who}{text}")
    return 0


def _claim(args: argparse.Namespace) -> int:
    status, answer = _post(args, f"/api/v1/tasks/{args.id}/claim", {})
    if status == 200:
        print(answer["owner"])
        return 0
    if status == 409 and isinstance(answer, dict) and answer.get("reason") == "owned":
        print(answer["winner"])
        print(f"bzzz-edge: lost: task {args.id} is held by {answer['winner']}", file=sys.stderr)
        return 1
    return _refused(status, answer)


def _progress(args: argparse.Namespace) -> int:
    return _command(args, "progress", {"text": args.text})


def _complete(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {}
    if args.result is not None:
        try:
            data = sys.stdin.buffer.read() if args.result == "-" else \
                Path(args.result).read_bytes()
        except OSError as exc:
            raise BzzzError(f"--result {args.result}: {exc.strerror or exc}") from None
        body["result_b64"] = base64.b64encode(data).decode()
    return _command(args, "complete", body)


def _fail(args: argparse.Namespace) -> int:
    return _command(args, "fail", {"reason": args.reason})


def _release(args: argparse.Namespace) -> int:
    return _command(args, "release")
