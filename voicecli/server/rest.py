"""The Agents REST API of the local server (protocol.md 6.9), on the WebSocket's own host and port.

websockets parses GET requests only (an upgrade is a GET), so the REST routes come in through a
seam: :class:`RestConnection`, the ``create_connection`` of ``websockets.asyncio.server.serve``,
reads the request line of each new connection before websockets sees a byte. A request for
``/v1/agents...`` (any method), or any request that is not a GET, is parsed by h11 and answered
here (``Connection: close``); everything else (upgrades, ``GET /v1/token``, the 426 of a plain
GET on ``/v1/ws``) goes on to websockets and ``http.py`` unchanged.

Routes (JSON bodies; errors FastAPI style, ``{"detail": "..."}`` or a 422 ``{"detail": [...]}``):

- ``POST /v1/agents`` -> 201 the agent (with its new ``id``); ``GET /v1/agents`` -> 200 a list of
  ``{id, name, created_at, updated_at}``;
- ``GET /v1/agents/{id}`` -> 200; ``PUT /v1/agents/{id}`` -> 200 (the given top-level fields
  replace the stored ones, then the whole agent is validated); ``DELETE /v1/agents/{id}`` -> 204;
  404 ``{"detail": "Agent not found"}``;
- auth: ``Authorization: <key>`` or ``Bearer <key>`` (the server's API key; 401 ``Missing
  authorization header`` / ``Unauthorized``). A server run without a key accepts any, or none.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import unquote, urlsplit

import h11
from websockets.asyncio.server import ServerConnection

from voicecli.protocol.config import KNOWN_VOICES

from .agents import AgentStore, StoreError, public, summary, validate_agent
from .auth import Credentials

log = logging.getLogger("voicecli.server")

AGENTS_PATH = "/v1/agents"
MAX_BODY_BYTES = 1 << 20
OTHER_PATHS = ("/v1/token", "/v1/ws", "/v1/voice", "/v1/realtime")   # GET only (http.py)
MAX_REQUEST_LINE = 8192
Answer = tuple[int, Any]   # (status, JSON body or None)


class RestApi:
    """The routes, as a function of (method, target, headers, body) -> (status, body). Blocking
    (the store does file I/O): :class:`RestConnection` runs it in a worker thread."""

    def __init__(self, store: AgentStore, credentials: Credentials,
                 voices: tuple[str, ...] = KNOWN_VOICES) -> None:
        self.store = store
        self.credentials = credentials
        self.voices = voices

    @staticmethod
    def handles(method: str, target: str) -> bool:
        """Whether a request line is ours (else websockets gets the connection)."""
        path = urlsplit(target).path.rstrip("/")
        return method != "GET" or path == AGENTS_PATH or path.startswith(AGENTS_PATH + "/")

    def _auth(self, headers: dict[str, str]) -> Answer | None:
        header = headers.get("authorization", "").strip()
        if self.credentials.api_key is None:
            return None                     # an open server (no --api-key): any key, or none
        if not header:
            return 401, {"detail": "Missing authorization header"}
        scheme, _, rest = header.partition(" ")
        key = rest.strip() if scheme.lower() == "bearer" else header   # raw key or Bearer (6.9)
        return None if self.credentials.key_ok(key) else (401, {"detail": "Unauthorized"})

    def answer(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Answer:
        path = urlsplit(target).path.rstrip("/") or "/"
        if path != AGENTS_PATH and not path.startswith(AGENTS_PATH + "/"):
            # a non-GET request elsewhere: the paths websockets serves take GET only
            if path in OTHER_PATHS:
                return 405, {"detail": "Method Not Allowed"}
            return 404, {"detail": "Not Found"}
        refused = self._auth(headers)
        if refused is not None:
            return refused
        agent_id = unquote(path[len(AGENTS_PATH) + 1:]) if path != AGENTS_PATH else None
        if agent_id is not None and "/" in agent_id:
            return 404, {"detail": "Not Found"}
        try:
            if agent_id is None:
                if method == "GET":
                    return 200, [summary(r) for r in self.store.all()]
                if method == "POST":
                    return self._create(body)
                return 405, {"detail": "Method Not Allowed"}
            if method == "GET":
                record = self.store.get(agent_id)
                return (200, public(record)) if record is not None else _not_found()
            if method == "PUT":
                return self._update(agent_id, body)
            if method == "DELETE":
                return (204, None) if self.store.delete(agent_id) else _not_found()
            return 405, {"detail": "Method Not Allowed"}
        except StoreError as exc:
            log.error("voicecli server: %s", exc)
            return 500, {"detail": "Agents store unavailable"}

    def _create(self, body: bytes) -> Answer:
        agent, bad = _json_body(body)
        if bad is not None:
            return bad
        errors = validate_agent(agent, self.voices)
        if errors:
            return 422, {"detail": errors}
        return 201, public(self.store.create(agent))

    def _update(self, agent_id: str, body: bytes) -> Answer:
        fields, bad = _json_body(body)
        if bad is not None:
            return bad
        if not isinstance(fields, dict):
            return 422, {"detail": validate_agent(fields, self.voices)}
        record, errors = self.store.update(agent_id, fields,
                                           lambda merged: validate_agent(merged, self.voices))
        if errors:
            return 422, {"detail": errors}
        return (200, public(record)) if record is not None else _not_found()


def _not_found() -> Answer:
    return 404, {"detail": "Agent not found"}


def _json_body(body: bytes) -> tuple[Any, Answer | None]:
    try:
        return json.loads(body.decode("utf-8") if body else ""), None
    except (ValueError, UnicodeDecodeError) as exc:
        pos = getattr(exc, "pos", 0)
        item = {"type": "json_invalid", "loc": ["body", pos], "msg": "JSON decode error", "input": {},
                "ctx": {"error": getattr(exc, "msg", str(exc))}}
        return None, (422, {"detail": [item]})


class RestConnection(ServerConnection):
    """A websockets server connection that answers REST requests itself (module docstring).
    ``api`` is set on the subclass :func:`rest_connection` makes."""

    api: RestApi

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head = bytearray()
        self._decided = False
        self._http: h11.Connection | None = None
        self._request: h11.Request | None = None
        self._body = bytearray()
        self._task: asyncio.Task[None] | None = None

    def data_received(self, data: bytes) -> None:
        if self._http is not None:
            self._feed(data)
            return
        if self._decided:
            super().data_received(data)
            return
        self._head += data
        end = self._head.find(b"\r\n")
        if end < 0 and len(self._head) < MAX_REQUEST_LINE:
            return                                   # wait for the whole request line
        line = bytes(self._head[: end if end >= 0 else MAX_REQUEST_LINE])
        buffered, self._decided = bytes(self._head), True
        self._head.clear()
        method, _, rest = line.decode("latin-1").partition(" ")
        if self.api.handles(method, rest.partition(" ")[0]):
            self._http = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_LINE * 2)
            self._feed(buffered)
        else:
            super().data_received(buffered)

    def eof_received(self) -> None:
        if self._http is not None:
            return None          # the answer (if any is due) is written before the transport closes
        if not self._decided:
            self._decided = True
            super().data_received(bytes(self._head))
        super().eof_received()

    def _feed(self, data: bytes) -> None:
        assert self._http is not None
        if self._task is not None:
            return                                   # one request per connection
        self._http.receive_data(data)
        try:
            while True:
                event = self._http.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED:
                    return
                if isinstance(event, h11.Request):
                    self._request = event
                elif isinstance(event, h11.Data):
                    self._body += event.data
                    if len(self._body) > MAX_BODY_BYTES:
                        self._send(413, {"detail": "Request body too large"})
                        return
                elif isinstance(event, h11.EndOfMessage):
                    self._task = self.loop.create_task(self._answer())
                    return
                elif isinstance(event, h11.ConnectionClosed):
                    return
        except h11.RemoteProtocolError as exc:
            self._send(exc.error_status_hint, {"detail": f"Bad request: {exc}"})

    async def _answer(self) -> None:
        request = self._request
        assert request is not None
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.headers}
        method, target = request.method.decode("latin-1"), request.target.decode("latin-1")
        try:
            status, body = await self.loop.run_in_executor(
                None, self.api.answer, method, target, headers, bytes(self._body))
        except Exception:   # noqa: BLE001 - a bug answers 500, the server keeps serving
            log.exception("voicecli server: %s %s failed", method, urlsplit(target).path)
            status, body = 500, {"detail": "Internal Server Error"}
        allow = None
        if status == 405:
            path = urlsplit(target).path.rstrip("/")
            allow = "GET, POST" if path == AGENTS_PATH else "GET, PUT, DELETE" \
                if path.startswith(AGENTS_PATH) else "GET"
        self._send(status, body, allow)

    def _send(self, status: int, body: Any, allow: str | None = None) -> None:
        assert self._http is not None
        payload = b"" if body is None else json.dumps(body).encode()
        headers = [("Content-Length", str(len(payload))), ("Connection", "close")]
        if body is not None:
            headers.append(("Content-Type", "application/json"))
        if allow:
            headers.append(("Allow", allow))
        try:
            out = self._http.send(h11.Response(status_code=status, headers=headers,
                                               reason=_reason(status)))
            if payload:
                out = (out or b"") + (self._http.send(h11.Data(data=payload)) or b"")
            out = (out or b"") + (self._http.send(h11.EndOfMessage()) or b"")
        except h11.LocalProtocolError:     # e.g. a response to a request h11 could not even read
            out = f"HTTP/1.1 {status} {_reason(status).decode()}\r\nContent-Length: {len(payload)}\r\n" \
                  f"Connection: close\r\n\r\n".encode() + payload
        if not self.transport.is_closing():
            self.transport.write(out)
            self.transport.close()


def _reason(status: int) -> bytes:
    import http
    try:
        return http.HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def rest_connection(api: RestApi) -> type[ServerConnection]:
    """The ``create_connection`` class for ``serve`` that answers ``api``'s routes."""
    return type("BoundRestConnection", (RestConnection,), {"api": api})
