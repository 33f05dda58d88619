"""Server URLs: add a ``?token=`` (protocol.md 1.2), redact secrets for display, check the scheme,
tell loopback hosts. Pure functions; a leaf module that settings, the transport and the token client
share."""

from __future__ import annotations

import ipaddress
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from voicecli.errors import UsageError


def with_token(url: str, token: str | None) -> str:
    """``url`` with ``?token=`` added (protocol.md 1.2); an existing query string is preserved."""
    if not token:
        return url
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "token"]
    query.append(("token", token))
    return urlunsplit(parts._replace(query=urlencode(query)))


def redact_url(url: str) -> str:
    """The URL as it may be shown to a user: any ``token`` value replaced (secrets never printed)."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    query = [(k, "***" if k.lower() in ("token", "api_key", "key") else v)
             for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit(parts._replace(query=urlencode(query, safe="*")))


def check_url(url: str) -> str:
    """``url`` unchanged if it is ``ws://`` or ``wss://`` with a host; else UsageError (exit 2)."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise UsageError(f"invalid server URL {redact_url(url)!r}",
                         "use ws://HOST:PORT/PATH or wss://HOST/PATH")
    return url


def is_loopback(url: str) -> bool:
    """True if the URL's host is this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
