"""Credentials of the local server: API keys, temporary tokens, resume tokens (protocol.md 1.2, 1.3).

Pure bookkeeping, no I/O. The caller passes ``now`` (wall-clock seconds) so tests and the server
share one clock. Rules:

- An API key is accepted when it equals ``api_key``; with ``api_key=None`` any non-empty key is.
- A temporary token (``GET /v1/token``) is single-use and must be redeemed within its
  ``expires_in_seconds`` (the redemption window; it stops mattering once the socket is open).
- A ``resume_token`` (sent in ``session.ready``) authenticates a later connection only to resume
  its own session, while that session is kept (live or in its resume window). Each resume mints
  a new one and the old one stops working; it never starts a new session (so the session of a
  single-use temporary token cannot hand out a credential that opens unlimited sessions).

Temporary tokens are indexed by expiry (a heap), so minting and redeeming stay O(log n) however
many tokens are outstanding (``bench/server_tokens.py``).
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import json
import secrets
from dataclasses import dataclass, field


class AuthFailure(Exception):
    """The credential was refused; ``str(exc)`` is the ``session.error`` message."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a connection authenticated as. ``owner`` is the API key (or the key that minted the
    token); sessions remember it so another owner cannot resume them (``session_forbidden``)."""

    owner: str
    kind: str  # "key" | "token" | "resume"
    max_session_duration_s: int | None = None
    resume_session_id: str | None = None   # kind "resume": the only session this connection may resume
    resume_token: str | None = field(default=None, repr=False)


@dataclass(slots=True)
class _TokenRecord:
    owner: str
    expires_at: float
    max_session_duration_s: int
    used: bool = False


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class Credentials:
    """Checks keys and issues/redeems tokens for one server."""

    def __init__(self, api_key: str | None) -> None:
        self.api_key = api_key
        self._secret = secrets.token_bytes(32)
        self._tokens: dict[str, _TokenRecord] = {}
        self._token_expiry: list[tuple[float, str]] = []   # heap of (expires_at, token)
        self._resume: dict[str, tuple[str, str]] = {}  # token -> (session_id, owner)
        self._resume_of: dict[str, str] = {}   # session_id -> its one valid resume token

    def key_ok(self, key: str) -> bool:
        """Whether ``key`` is an accepted API key (any non-empty key when api_key is None)."""
        if not key:
            return False
        if self.api_key is None:
            return True
        return hmac.compare_digest(key.encode(), self.api_key.encode())

    def _jwt_like(self, claims: dict[str, object]) -> str:
        # JWT-shaped like the real tokens (protocol.md 1.3: ~2,400 chars, JWT-like); only the
        # server's own table decides validity, the signature just makes forgeries obvious.
        head = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        body = _b64url(json.dumps(claims, separators=(",", ":")).encode())
        sig = _b64url(hmac.new(self._secret, f"{head}.{body}".encode(), hashlib.sha256).digest())
        return f"{head}.{body}.{sig}"

    def mint(self, owner: str, expires_in_s: int, max_session_duration_s: int, now: float) -> str:
        """A new single-use temporary token, redeemable until ``now + expires_in_s``."""
        self.expire(now)
        token = self._jwt_like({"iss": "voicecli-local", "jti": secrets.token_hex(16),
                                "exp": int(now + expires_in_s), "msd": max_session_duration_s})
        self._tokens[token] = _TokenRecord(owner, now + expires_in_s, max_session_duration_s)
        heapq.heappush(self._token_expiry, (now + expires_in_s, token))
        return token

    def expire(self, now: float) -> None:
        """Drop temporary tokens whose redemption window is over (used or not)."""
        heap = self._token_expiry
        while heap and heap[0][0] < now:
            _, token = heapq.heappop(heap)
            self._tokens.pop(token, None)

    @property
    def outstanding(self) -> int:
        """Temporary tokens still held (unexpired; used ones until their expiry)."""
        return len(self._tokens)

    def mint_resume(self, session_id: str, owner: str) -> str:
        """The resume token for ``session_id``; the session's previous one stops working
        (valid until the next call or :meth:`forget_session`)."""
        self.forget_session(session_id)
        token = self._jwt_like({"iss": "voicecli-local", "sid": session_id, "jti": secrets.token_hex(16)})
        self._resume[token] = (session_id, owner)
        self._resume_of[session_id] = token
        return token

    def resume_token_current(self, session_id: str, token: str) -> bool:
        """Whether ``token`` is the one valid resume token of ``session_id`` right now."""
        current = self._resume_of.get(session_id)
        return current is not None and hmac.compare_digest(current, token)

    def forget_session(self, session_id: str) -> None:
        """Invalidate the resume token of a session (it ended, or a new one replaces it)."""
        token = self._resume_of.pop(session_id, None)
        if token is not None:
            self._resume.pop(token, None)

    def _redeem(self, token: str, now: float) -> Identity:
        record = self._tokens.get(token)
        if record is None:
            raise AuthFailure("Invalid temporary token")
        if record.used:
            raise AuthFailure("Temporary token has already been used (tokens are single-use)")
        if now > record.expires_at:
            raise AuthFailure("Temporary token has expired")
        record.used = True
        return Identity(record.owner, "token", record.max_session_duration_s)

    def authenticate(self, authorization: str | None, query_token: str | None, now: float) -> Identity:
        """Check the credential of a WebSocket upgrade (protocol.md 1.2).

        ``authorization`` is the raw header value (``Bearer <key|token|resume_token>``);
        ``query_token`` the ``?token=`` value. The header wins when both are present. Raises
        :class:`AuthFailure` when a credential is refused, or none is given to a server that has
        an API key; redeeming a temporary token uses it up."""
        if authorization is not None and authorization.strip():
            scheme, _, value = authorization.strip().partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise AuthFailure("Authorization header must be 'Bearer <API key>'")
            value = value.strip()
            if value in self._resume:
                session_id, owner = self._resume[value]
                return Identity(owner, "resume", resume_session_id=session_id, resume_token=value)
            if value in self._tokens:
                return self._redeem(value, now)
            if self.key_ok(value):
                return Identity(value, "key")
            raise AuthFailure("Invalid API key")
        if query_token:
            if query_token in self._resume:
                session_id, owner = self._resume[query_token]
                return Identity(owner, "resume", resume_session_id=session_id, resume_token=query_token)
            return self._redeem(query_token, now)
        if self.api_key is None:   # an open server (no --api-key): a bare connection is fine too
            return Identity("anonymous", "open")
        raise AuthFailure("Missing authorization: send 'Authorization: Bearer <API key>' or ?token=")
