"""``/api/v1/agents`` through the node's ASGI app: the directory's rows, the API's token
check and error shape, and 503 until the agents service runs."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import trio

from bzzz_edge.api import create_app

ROW = {"node_id": "X", "name": "node0", "self": True, "roles": {"qa": ["tests/*"]}}


def get(app: Any, path: str, token: str = "") -> tuple[int, Any]:
    """One GET through the ASGI app, in trio."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "headers": headers,
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2)}

    async def main() -> None:
        await app(scope, receive, send)

    trio.run(main)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body)


def node(agents: Any) -> Any:
    return SimpleNamespace(agents=agents, settings=None, health=None, metrics=None)


def test_agents_lists_the_directory_with_its_counters() -> None:
    service = SimpleNamespace(agents=lambda: [ROW], counts=lambda: {"accepted": 3})
    status, body = get(create_app(node(service)), "/api/v1/agents")
    assert status == 200 and body == {"agents": [ROW], "counters": {"accepted": 3}}


def test_agents_before_the_service_runs_is_503_in_the_error_shape() -> None:
    status, body = get(create_app(node(None)), "/api/v1/agents")
    assert status == 503
    assert body == {"error": "the agents service is not running", "path": "/api/v1/agents"}


def test_agents_needs_the_token_when_one_is_set() -> None:
    service = SimpleNamespace(agents=lambda: [ROW], counts=lambda: {})
    app = create_app(node(service), token="secret")
    status, body = get(app, "/api/v1/agents")
    assert status == 401 and body["path"] == "/api/v1/agents"
    assert get(app, "/api/v1/agents", token="secret") == (200, {"agents": [ROW],
                                                                "counters": {}})
