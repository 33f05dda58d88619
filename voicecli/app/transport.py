"""WebSocket transport: open a connection (Bearer header or ``?token=``), map failures to the
exception tree. No protocol rules here (those live in ``voicecli.session``); URL handling is
:mod:`voicecli.urls` (re-exported here)."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

from voicecli import __version__
from voicecli.errors import AuthError, ConnectError, ServerError, UsageError
from voicecli.urls import check_url, is_loopback, redact_url, with_token

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

__all__ = ["MAX_FRAME", "backoff", "check_url", "connect", "is_loopback", "redact_url", "with_token"]

MAX_FRAME = 16 * 1024 * 1024
# How long a closing connection may take to finish (websockets' default is 10 s). A server that
# sends its close frame and then stops reading (so never sees ours) would otherwise hold every
# send and the reader for 10 s before the drop is noticed and resumed.
CLOSE_TIMEOUT_S = 2.0


def backoff(base: float = 0.25, cap: float = 4.0) -> Iterator[float]:
    """Jittered exponential backoff delays (full jitter). Tests pass their own generator."""
    delay = base
    while True:
        yield random.uniform(base / 2, delay)
        delay = min(cap, delay * 2)


async def connect(url: str, api_key: str | None = None, token: str | None = None,
                  open_timeout: float = 10.0) -> ClientConnection:
    """Open the WebSocket (the caller closes it).

    Raises AuthError (HTTP 401/403), ConnectError (refused, DNS, TLS, timeout), ServerError
    (any other handshake failure), UsageError (bad URL)."""
    from websockets.asyncio.client import connect as ws_connect
    from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI

    check_url(url)
    target = with_token(url, token)
    headers = {}
    if api_key and not token:
        headers["Authorization"] = f"Bearer {api_key}"
    shown = redact_url(url)
    try:
        return await ws_connect(
            target, additional_headers=headers, compression=None, max_size=MAX_FRAME,
            open_timeout=open_timeout, close_timeout=CLOSE_TIMEOUT_S,
            user_agent_header=f"voicecli/{__version__}",
            proxy=None if is_loopback(url) else True,
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        if status in (401, 403):
            raise AuthError(f"the server refused the credentials (HTTP {status})",
                            "check the API key or token") from None
        raise ServerError(f"the server answered HTTP {status} instead of a WebSocket at {shown}",
                          "check the URL path (e.g. /v1/ws)") from None
    except InvalidURI:
        raise UsageError(f"invalid server URL {shown!r}") from None
    except TimeoutError:
        raise ConnectError(f"timed out connecting to {shown}", "is the server up?") from None
    except socket.gaierror:
        raise ConnectError(f"cannot resolve the host of {shown}", "check the URL and network") from None
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise ConnectError(f"cannot connect to {shown}: {reason}",
                           "is the server running? (`voicecli serve`, or use --local)") from None
    except InvalidHandshake as exc:
        raise ConnectError(f"WebSocket handshake with {shown} failed: {exc}") from None
