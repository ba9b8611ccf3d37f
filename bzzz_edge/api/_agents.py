"""The directory of agents over HTTP. Does I/O through the server that runs it.

Endpoint:
    GET /api/v1/agents   ``{"agents": [agent...], "counters": {...}}``: every node this node
                         heard of (itself first): ``node_id`` (as `bzzz-edge id` prints it),
                         ``name``, ``self``, ``status`` (membership's: alive, suspect, dead,
                         left, unknown), ``roles`` (name: scope patterns; null until heard),
                         ``capabilities`` (null until heard), ``profile`` (their digest),
                         ``profile_known``, ``capacity``, ``tasks_held``, ``tasks`` (IDs, the
                         first 64), ``load`` (1, 5, 15 min), ``memory_percent``,
                         ``memory_available`` (bytes), ``cpus``, ``last_heard_s``, ``sent_at``
                         (the node's wall clock, seconds)

503 ``{"error", "path"}`` until the agents service runs.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._ops import error_response

__all__ = ["agent_routes"]


def agent_routes(node: Any) -> list[Route]:
    """The route above, for a node with an ``agents`` service (None until it runs)."""

    async def listing(request: Request) -> Response:
        service = getattr(node, "agents", None)
        if service is None:
            return error_response(503, "the agents service is not running", request.url.path)
        return JSONResponse({"agents": service.agents(), "counters": service.counts()})

    return [Route("/api/v1/agents", listing)]
