"""The client side of the service's plain-HTTP endpoints beside the WebSocket (``/v1/token``,
``/v1/agents``): where they are, one request with the "cannot reach" mapping, and the FastAPI-style
error detail. :mod:`voicecli.app.tokens` and :mod:`voicecli.app.agents_api` map the statuses."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from urllib.parse import urlsplit, urlunsplit

from voicecli.errors import ConnectError, UsageError
from voicecli.ui.sanitize import clean
from voicecli.urls import is_loopback

_SCHEMES = {"ws": "http", "wss": "https", "http": "http", "https": "https"}


def endpoint_url(ws_url: str, name: str, what: str) -> str:
    """``ws://h:p/v1/ws`` -> ``http://h:p/v1/NAME`` (``wss`` -> ``https``); the query is dropped.
    ``what`` names the endpoint in the error (e.g. "token")."""
    parts = urlsplit(ws_url)
    scheme = _SCHEMES.get(parts.scheme)
    if scheme is None or not parts.hostname:
        raise UsageError(f"cannot derive the {what} endpoint from the server URL scheme {parts.scheme!r}",
                         "use a ws:// or wss:// URL")
    head, _, last = parts.path.rstrip("/").rpartition("/")
    path = f"{head}/{name}" if last in ("ws", "voice", "realtime") else f"/v1/{name}"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def opener_for(ws_url: str) -> urllib.request.OpenerDirector:
    """A server on this machine is reached directly, never through a configured proxy."""
    handlers = [urllib.request.ProxyHandler({})] if is_loopback(ws_url) else []
    return urllib.request.build_opener(*handlers)


def send(opener: urllib.request.OpenerDirector, request: urllib.request.Request, timeout: float,
         what: str) -> tuple[int, bytes]:
    """``(status, body)``, an HTTP error status included; ConnectError ("cannot reach WHAT: ...")
    when nothing answers. ``what`` names the endpoint and its (printable) URL."""
    try:
        with opener.open(request, timeout=timeout) as response:
            body: bytes = response.read()
            return response.status, body
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except urllib.error.URLError as exc:
        reason = getattr(exc.reason, "strerror", None) or str(exc.reason)
        raise ConnectError(f"cannot reach {what}: {clean(reason, 200)}",
                           "is the server running? check --url") from None
    except (TimeoutError, OSError) as exc:
        raise ConnectError(f"cannot reach {what}: {exc.__class__.__name__}",
                           "is the server running? check --url") from None


def error_detail(body: bytes) -> tuple[str, str]:
    """(field, message) of an error body: FastAPI's ``detail`` string, or its first ``{loc, msg}``
    (the location without its ``body``/``query``/``path`` head)."""
    try:
        detail = json.loads(body).get("detail")
    except (ValueError, AttributeError):
        return "", ""
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        item = detail[0]
        loc = [str(x) for x in item.get("loc", [])]
        where = ".".join(loc[1:] if loc[:1] in (["body"], ["query"], ["path"]) else loc)
        more = f" (and {len(detail) - 1} more)" if len(detail) > 1 else ""
        return clean(where, 100), clean(str(item.get("msg", "")), 300) + more
    return "", clean(str(detail or ""), 300)
