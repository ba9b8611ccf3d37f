"""HTTP API: health, metrics, node information (UCXI and tasks plug in here later). Does I/O."""

from ._app import ApiNode, create_app
from ._server import ApiServer

__all__ = ["ApiNode", "ApiServer", "create_app"]
