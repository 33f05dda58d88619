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
    """The URL as it may be shown to a user: credentials in it replaced (secrets never printed):
    the ``user:password@`` part (the whole of it: a lone user name can be a key too) and any
    ``token``/``api_key``/``key`` query value."""
    try:
        parts = urlsplit(url)
    except ValueError:     # unparsable (e.g. a bad IPv6 literal): show nothing that could be a secret
        return "<unparsable URL>"
    if "@" in parts.netloc:
        parts = parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2])
    if parts.query:
        query = [(k, "***" if k.lower() in ("token", "api_key", "key") else v)
                 for k, v in parse_qsl(parts.query, keep_blank_values=True)]
        parts = parts._replace(query=urlencode(query, safe="*"))
    return urlunsplit(parts)


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a server URL (scheme, host, port), or None if it can."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:      # urllib: "Port out of range 0-65535", "Port could not be cast..."
        return "its port must be a number from 1 to 65535" if "port" in str(exc).lower() else str(exc)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        return "must start with ws:// or wss:// and name a host"
    if port == 0:
        return "its port must be a number from 1 to 65535"
    return None


def check_url(url: str) -> str:
    """``url`` unchanged if it is ``ws://`` or ``wss://`` with a host and a valid port; else
    UsageError (exit 2) saying what is wrong."""
    problem = url_problem(url)
    if problem is not None:
        raise UsageError(f"invalid server URL {redact_url(url)!r}: {problem}",
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
