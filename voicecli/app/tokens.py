"""The token client: ``GET /v1/token`` (protocol.md 1.3) minting a single-use temporary token with
an API key. Blocking (urllib; callers run it in a thread). Errors are the exception tree's: AuthError
(401/403), ConnectError (unreachable), UsageError (422, or a URL with no token endpoint),
ServerError (anything else). The key is sent as a Bearer header and never appears in a message."""

from __future__ import annotations

import json
import urllib.request
from urllib.parse import urlencode

from voicecli.app.rest import endpoint_url, error_detail, opener_for, send
from voicecli.errors import AuthError, ServerError, UsageError
from voicecli.ui.sanitize import clean
from voicecli.urls import redact_url


def token_url(ws_url: str) -> str:
    """``ws://h:p/v1/ws`` -> ``http://h:p/v1/token`` (``wss`` -> ``https``); the query is dropped."""
    return endpoint_url(ws_url, "token", "token")


def _detail(body: bytes) -> str:
    where, message = error_detail(body)
    return f"{where}: {message}".strip(": ")


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
    status, body = send(opener_for(ws_url), request, timeout, f"the token endpoint {shown}")
    if status >= 400:
        detail = clean(_detail(body), 200)
        if status == 401 and not api_key:
            raise AuthError(f"the token endpoint {shown} needs an API key (HTTP 401"
                            + (f": {detail}" if detail else "") + ")",
                            "set ASSEMBLYAI_API_KEY or pass --api-key")
        raise _http_error(status, detail, shown)
    return _token_from(body, shown)


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
