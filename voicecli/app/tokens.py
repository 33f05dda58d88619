"""The token client: ``GET /v1/token`` (protocol.md 1.3) minting a single-use temporary token with
an API key. Blocking (urllib; callers run it in a thread). Errors are the exception tree's: AuthError
(401/403), ConnectError (unreachable), UsageError (422, or a URL with no token endpoint),
ServerError (anything else). The key is sent as a Bearer header and never appears in a message."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from urllib.parse import urlencode, urlsplit, urlunsplit

from voicecli.errors import AuthError, ConnectError, ServerError, UsageError
from voicecli.ui.sanitize import clean
from voicecli.urls import is_loopback, redact_url


def token_url(ws_url: str) -> str:
    """``ws://h:p/v1/ws`` -> ``http://h:p/v1/token`` (``wss`` -> ``https``); the query is dropped."""
    parts = urlsplit(ws_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme)
    if scheme is None or not parts.hostname:
        raise UsageError(f"cannot derive the token endpoint from the server URL scheme {parts.scheme!r}",
                         "use a ws:// or wss:// URL")
    head, _, last = parts.path.rstrip("/").rpartition("/")
    path = f"{head}/token" if last in ("ws", "voice", "realtime") else "/v1/token"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def _detail(body: bytes) -> str:
    """The ``detail`` of an error body (FastAPI style: a string, or a list of ``{loc, msg}``)."""
    try:
        detail = json.loads(body).get("detail")
    except (ValueError, AttributeError):
        return ""
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        item = detail[0]
        where = ".".join(str(x) for x in item.get("loc", [])[1:])
        return f"{where}: {item.get('msg', '')}".strip(": ")
    return str(detail or "")


def mint_token(ws_url: str, api_key: str | None, expires_in: int, max_duration: int | None,
               timeout: float = 10.0) -> str:
    """The token the server at ``ws_url`` mints for ``api_key``; with no key the request carries
    no ``Authorization`` (an open server, e.g. ``voicecli serve`` without ``--api-key``, mints
    anyway; one that needs a key answers 401 -> AuthError saying to set one). Blocking (run it in
    a thread). Raises AuthError (401/403), ConnectError (unreachable), ServerError (anything else
    unexpected), UsageError (422)."""
    target = token_url(ws_url)
    shown = redact_url(target)       # what errors may print: no user:password@
    query = {"expires_in_seconds": expires_in}
    if max_duration is not None:
        query["max_session_duration_seconds"] = max_duration
    headers = {"Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(f"{target}?{urlencode(query)}", headers=headers)
    # a server on this machine is reached directly, never through a configured proxy
    handlers = [urllib.request.ProxyHandler({})] if is_loopback(ws_url) else []
    opener = urllib.request.build_opener(*handlers)
    return _token_from(_fetch(opener, request, shown, timeout, keyed=bool(api_key)), shown)


def _fetch(opener: urllib.request.OpenerDirector, request: urllib.request.Request, shown: str,
           timeout: float, keyed: bool = True) -> bytes:
    try:
        with opener.open(request, timeout=timeout) as response:
            body: bytes = response.read()
            return body
    except urllib.error.HTTPError as exc:
        detail = clean(_detail(exc.read()), 200)
        if exc.code == 401 and not keyed:
            raise AuthError(f"the token endpoint {shown} needs an API key (HTTP 401"
                            + (f": {detail}" if detail else "") + ")",
                            "set ASSEMBLYAI_API_KEY or pass --api-key") from None
        raise _http_error(exc.code, detail, shown) from None
    except urllib.error.URLError as exc:
        reason = getattr(exc.reason, "strerror", None) or str(exc.reason)
        raise ConnectError(f"cannot reach the token endpoint {shown}: {clean(reason, 200)}",
                           "is the server running? check --url") from None
    except (TimeoutError, OSError) as exc:
        raise ConnectError(f"cannot reach the token endpoint {shown}: {exc.__class__.__name__}",
                           "is the server running? check --url") from None


def _http_error(code: int, detail: str, shown: str) -> AuthError | UsageError | ServerError:
    if code in (401, 403):
        return AuthError(f"the server refused the API key (HTTP {code}" + (f": {detail}" if detail else "")
                         + ")", "check --api-key / ASSEMBLYAI_API_KEY")
    if code == 422:
        return UsageError(f"the server rejected the token request: {detail or 'invalid value'}",
                          "--expires-in takes 1-600, --max-session-duration 60-10800")
    return ServerError(f"the token endpoint {shown} answered HTTP {code}" + (f": {detail}" if detail else ""),
                       "check the URL")


def _token_from(body: bytes, shown: str) -> str:
    try:
        token = json.loads(body)["token"]
    except (ValueError, KeyError, TypeError):
        token = None
    if not isinstance(token, str) or not token:
        raise ServerError(f"the token endpoint {shown} answered without a token",
                          "check the URL points at a Voice Agent API server")
    return token
