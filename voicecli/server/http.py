"""Plain-HTTP side of the local server, run by websockets' ``process_request`` hook.

Routes (protocol.md 1.1, 1.3):

- ``/v1/ws``, ``/v1/voice``, ``/v1/realtime``: WebSocket upgrades continue to the handler; a
  plain GET without ``Upgrade: websocket`` gets **426 Upgrade Required** (seen live, 1.1).
- ``GET /v1/token?expires_in_seconds=N[&max_session_duration_seconds=M]``: mints a single-use
  temporary token. ``Authorization: Bearer <key>`` or the raw key. 200
  ``{"token", "expires_in_seconds"}``; 401 ``{"detail": "Unauthorized"}`` (or "Missing
  authorization header"); 422 FastAPI/pydantic style ``{"detail": [{type, loc, msg, input,
  ctx?}]}`` when a value is missing, not an integer or out of range.
- anything else: 404 ``{"detail": "Not Found"}``.
"""

from __future__ import annotations

import http
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from .auth import Credentials

WS_PATHS = ("/v1/ws", "/v1/voice", "/v1/realtime")
TOKEN_PATH = "/v1/token"

# (name, required, default, minimum, maximum) per protocol.md 1.3
_TOKEN_PARAMS: tuple[tuple[str, bool, int, int, int], ...] = (
    ("expires_in_seconds", True, 300, 1, 600),
    ("max_session_duration_seconds", False, 10800, 60, 10800),
)


def json_response(connection: ServerConnection, status: int, body: Any) -> Response:
    """An HTTP response with a JSON body (``connection.respond`` makes text/plain; swap the type)."""
    response = connection.respond(http.HTTPStatus(status), json.dumps(body))
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "application/json"
    return response


def _int_param(query: dict[str, list[str]], name: str, required: bool, default: int,
               lo: int, hi: int) -> tuple[int | None, dict[str, Any] | None]:
    """(value, None) or (None, pydantic-style error item)."""
    loc = ["query", name]
    values = query.get(name)
    if not values:
        if required:
            return None, {"type": "missing", "loc": loc, "msg": "Field required", "input": None}
        return default, None
    raw = values[0].strip()
    try:
        value = int(raw)
    except ValueError:
        return None, {"type": "int_parsing", "loc": loc,
                      "msg": "Input should be a valid integer, unable to parse string as an integer",
                      "input": values[0]}
    if value < lo:
        return None, {"type": "greater_than_equal", "loc": loc,
                      "msg": f"Input should be greater than or equal to {lo}", "input": values[0],
                      "ctx": {"ge": lo}}
    if value > hi:
        return None, {"type": "less_than_equal", "loc": loc,
                      "msg": f"Input should be less than or equal to {hi}", "input": values[0],
                      "ctx": {"le": hi}}
    return value, None


def token_endpoint(connection: ServerConnection, request: Request, query: str,
                   credentials: Credentials, now: float) -> Response:
    """Answer ``GET /v1/token`` (protocol.md 1.3). Tokens can be minted with API keys only."""
    if request.method != "GET":
        return json_response(connection, 405, {"detail": "Method Not Allowed"})
    header = request.headers.get("Authorization")
    if (header is None or not header.strip()) and credentials.api_key is None:
        key = "anonymous"   # an open server (no --api-key) mints without one, as it connects without one
    elif header is None or not header.strip():
        return json_response(connection, 401, {"detail": "Missing authorization header"})
    else:
        scheme, _, rest = header.strip().partition(" ")
        key = rest.strip() if scheme.lower() == "bearer" else header.strip()  # raw key works too [L]
        if not credentials.key_ok(key):
            return json_response(connection, 401, {"detail": "Unauthorized"})
    parsed = parse_qs(query, keep_blank_values=True)
    values: dict[str, int] = {}
    errors: list[dict[str, Any]] = []
    for name, required, default, lo, hi in _TOKEN_PARAMS:
        value, error = _int_param(parsed, name, required, default, lo, hi)
        if error is not None:
            errors.append(error)
        elif value is not None:
            values[name] = value
    if errors:
        return json_response(connection, 422, {"detail": errors})
    expires_in = values["expires_in_seconds"]
    token = credentials.mint(key, expires_in, values["max_session_duration_seconds"], now)
    return json_response(connection, 200, {"token": token, "expires_in_seconds": expires_in})


def make_process_request(credentials: Credentials, clock: Callable[[], float] = time.time
                         ) -> Callable[[ServerConnection, Request], Response | None]:
    """The ``process_request`` hook: route plain HTTP, let upgrades on WS_PATHS through."""

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        path = url.path.rstrip("/") or "/"
        if path in WS_PATHS:
            upgrade = request.headers.get("Upgrade", "")
            if "websocket" not in upgrade.lower():
                response = connection.respond(http.HTTPStatus.UPGRADE_REQUIRED, "Upgrade Required\n")
                response.headers["Upgrade"] = "websocket"
                return response
            return None
        if path == TOKEN_PATH:
            return token_endpoint(connection, request, url.query, credentials, clock())
        return json_response(connection, 404, {"detail": "Not Found"})

    return process_request
