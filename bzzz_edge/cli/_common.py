"""What every subcommand shares: the config from flags, and the client for a node's HTTP API.

Does I/O: reads the runtime file, talks HTTP to a node (urllib, no event loop needed).
"""

from __future__ import annotations

import argparse
import json
import urllib.error
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..config import Config, load_config
from ..errors import BzzzError

if TYPE_CHECKING:
    import urllib.request

__all__ = ["FLAG_KEYS", "NodeApi", "config_from", "error_text"]

# Named flags that are shortcuts for config keys (every key is also reachable with --set).
FLAG_KEYS = {
    "data_dir": "node.data_dir",
    "log_level": "log.level",
    "log_format": "log.format",
    "api_listen": "api.listen",
    "listen": "network.listen",
    "token": "api.token",
}


def config_from(args: argparse.Namespace) -> Config:
    """The effective config: defaults < file < environment < ``--set`` and named flags."""
    flags: dict[str, Any] = {}
    for item in args.set or ():
        key, sep, value = item.partition("=")
        if not sep:
            raise BzzzError(f"--set {item!r}: expected section.key=value")
        flags[key.strip()] = value
    for dest, key in FLAG_KEYS.items():
        value = getattr(args, dest, None)
        if value is not None:
            flags[key] = value
    return load_config(flags=flags, config_file=args.config)


class NodeApi:
    """A running node's HTTP API: ``--api URL`` or the one in ``<data dir>/node.json``.

    The token comes from ``--token``, ``BZZZ_EDGE_API_TOKEN`` or the config (``api.token``,
    ``api.token_file``), in that order of precedence (flags over environment over file).
    """

    def __init__(self, args: argparse.Namespace) -> None:
        config = config_from(args)
        self.token: str = config["api.token"]
        self.base = _base_url(args.api) if getattr(args, "api", None) else _runtime_url(config)

    def _request(self, method: str, path: str, body: Any = None) -> urllib.request.Request:
        # urllib.request only here and below: `run` imports this module (config_from), and a
        # node would keep the HTTP client it never uses.
        import urllib.request

        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        return request

    def call(self, method: str, path: str, body: Any = None, *,
             timeout: float = 15.0) -> tuple[int, Any]:
        """(HTTP status, decoded JSON body). A 401 or an unreachable node is a ``BzzzError``."""
        import urllib.request

        try:
            with urllib.request.urlopen(self._request(method, path, body),
                                        timeout=timeout) as response:
                return response.status, _decode(response.read(), self.base)
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                raise BzzzError(self._unauthorized()) from None
            return exc.code, _decode(exc.read(), self.base)
        except OSError as exc:
            reason = getattr(exc, "reason", None) or exc.strerror or exc
            raise BzzzError(f"cannot reach the node's API at {self.base}: {reason}") from None

    def get(self, path: str) -> Any:
        """GET ``path``; an error answer is a ``BzzzError`` with the node's message."""
        status, body = self.call("GET", path)
        if status >= 400 and not path.startswith("/health"):
            raise BzzzError(f"{path}: {error_text(body, status)}")
        return body

    def stream(self, path: str) -> Iterator[str]:
        """The lines of a streamed answer (the monitor), until the node closes it."""
        import urllib.request

        try:
            response = urllib.request.urlopen(self._request("GET", path), timeout=None)
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                raise BzzzError(self._unauthorized()) from None
            raise BzzzError(f"{path}: {error_text(_decode(exc.read(), self.base), exc.code)}"
                            ) from None
        except OSError as exc:
            reason = getattr(exc, "reason", None) or exc.strerror or exc
            raise BzzzError(f"cannot reach the node's API at {self.base}: {reason}") from None
        with response:
            for raw in response:
                yield raw.decode("utf-8", "replace").rstrip("\n")

    def _unauthorized(self) -> str:
        if self.token:
            return f"the node at {self.base} refused the API token given (401)"
        return (f"the node at {self.base} needs an API token (401): pass --token, set "
                "BZZZ_EDGE_API_TOKEN, or set api.token_file in the config")


def error_text(body: Any, status: int) -> str:
    """The message of an API error answer."""
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return f"HTTP {status}"


def _decode(raw: bytes, base: str) -> Any:
    try:
        return json.loads(raw or b"null")
    except ValueError:
        raise BzzzError(f"{base} did not answer with JSON; is it a bzzz-edge API?") from None


def _base_url(text: str) -> str:
    url = text if "://" in text else f"http://{text}"
    if not url.startswith(("http://", "https://")):
        raise BzzzError(f"--api {text!r}: expected http://HOST:PORT")
    return url.rstrip("/")


def _runtime_url(config: Config) -> str:
    # (The data dir's module, not the node's: that would load trio and the whole node, 0.4 s
    # of every CLI call.)
    from ..lifecycle.datadir import RUNTIME_FILE

    runtime = config.data_dir / RUNTIME_FILE
    try:
        base = json.loads(runtime.read_text())["api"]
    except FileNotFoundError:
        raise BzzzError(f"no running node found ({runtime} is missing); is it started? "
                        "(or pass --api URL)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BzzzError(f"cannot read {runtime}: {getattr(exc, 'strerror', None) or exc}; "
                        "pass --api URL") from None
    if not isinstance(base, str):
        raise BzzzError(f"{runtime} names no API URL; pass --api URL")
    return base
