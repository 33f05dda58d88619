"""The Agents REST API client (protocol.md 6.9) behind ``voicecli agents`` and ``--agent-id NAME``.

Blocking (urllib; callers run it in a thread). The base URL is derived from the WebSocket URL:
``wss://agents.assemblyai.com/v1/ws`` -> ``https://agents.assemblyai.com/v1/agents`` (``ws`` ->
``http`` for a local server). The key goes in the ``Authorization`` header (raw, as the REST API
documents; never in a message). Errors are the exception tree's: AuthError (401/403), ConnectError
(unreachable), UsageError (422: the field and its message), :class:`AgentNotFound` (404), ServerError
(anything else).
"""

from __future__ import annotations

import json
import re
import urllib.request
from typing import Any
from urllib.parse import quote

from voicecli.app.rest import endpoint_url, error_detail, opener_for, send
from voicecli.errors import AuthError, ServerError, UsageError, VoicecliError
from voicecli.ui.sanitize import clean
from voicecli.urls import is_loopback

UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class AgentNotFound(VoicecliError):
    """No agent with that id (or name) on the server (exit 1)."""


def agents_url(ws_url: str) -> str:
    """``ws://h:p/v1/ws`` -> ``http://h:p/v1/agents`` (``wss`` -> ``https``); the query is dropped."""
    return endpoint_url(ws_url, "agents", "agents")


class AgentsClient:
    """``list``/``get``/``create``/``update``/``delete`` on ``ws_url``'s Agents API."""

    def __init__(self, ws_url: str, api_key: str | None, timeout: float = 15.0) -> None:
        self.base = agents_url(ws_url)
        self.api_key = api_key
        self.timeout = timeout
        self.opener = opener_for(ws_url)

    def _call(self, method: str, agent_id: str | None = None, body: Any = None) -> Any:
        url = self.base if agent_id is None else f"{self.base}/{quote(agent_id, safe='')}"
        headers = {"Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = self.api_key
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        status, raw = send(self.opener, request, self.timeout, f"the agents API {self.base}")
        if status >= 400:
            raise self._error(status, raw, agent_id)
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise ServerError(f"the agents API {self.base} answered something that is not JSON",
                              "check --url points at a Voice Agent API server") from None

    def _error(self, code: int, body: bytes, agent_id: str | None) -> VoicecliError:
        where, message = error_detail(body)
        said = f": {message}" if message else ""
        if code in (401, 403):
            return AuthError(f"the server refused the API key (HTTP {code}{said})",
                             "check --api-key / ASSEMBLYAI_API_KEY")
        if code == 404 and agent_id is not None:
            return AgentNotFound(f"no such agent: {clean(agent_id, 100)}", "voicecli agents list shows them")
        if code == 422:
            return UsageError(f"the server rejected the agent: {where + ': ' if where else ''}"
                              f"{message or 'invalid value'}")
        return ServerError(f"the agents API {self.base} answered HTTP {code}{said}", "check --url")

    def list(self) -> list[dict[str, Any]]:
        """The agents' summaries (id, name, timestamps). Tolerates a bare list or ``{"agents": [...]}``."""
        body = self._call("GET")
        if isinstance(body, dict):
            body = body.get("agents", body.get("data", body.get("items")))
        if not isinstance(body, list):
            raise ServerError(f"the agents API {self.base} answered a list in an unknown shape")
        return [a for a in body if isinstance(a, dict)]

    def get(self, agent_id: str) -> dict[str, Any]:
        body = self._call("GET", agent_id)
        return body if isinstance(body, dict) else {}

    def create(self, agent: dict[str, Any]) -> dict[str, Any]:
        body = self._call("POST", None, agent)
        return body if isinstance(body, dict) else {}

    def update(self, agent_id: str, agent: dict[str, Any]) -> dict[str, Any]:
        body = self._call("PUT", agent_id, agent)
        return body if isinstance(body, dict) else {}

    def delete(self, agent_id: str) -> None:
        self._call("DELETE", agent_id)

    def resolve(self, ref: str) -> str:
        """An agent id for ``ref``: a UUID as it is; else an id in the list, else the one agent
        named exactly ``ref``. No match or several: AgentNotFound / UsageError naming the choices."""
        if UUID_RE.match(ref):
            return ref
        agents = self.list()
        if any(a.get("id") == ref for a in agents):
            return ref
        named = [a for a in agents if a.get("name") == ref]
        if len(named) == 1:
            return str(named[0].get("id"))
        if named:
            ids = ", ".join(str(a.get("id")) for a in named)
            raise UsageError(f"{len(named)} agents are named {clean(ref, 100)!r}: {ids}",
                             "give the id instead")
        names = ", ".join(sorted({clean(str(a.get("name")), 60) for a in agents})) or "none"
        raise AgentNotFound(f"no agent with id or name {clean(ref, 100)!r} (agents: {names})",
                            "voicecli agents list shows them")


# --------------------------------------------------------------------------------------------
# TOML out (``voicecli agents show``): the config file's shape, readable back with --from
# --------------------------------------------------------------------------------------------


# what could drive a terminal (ui/sanitize.py's set), escaped as \uXXXX in TOML and JSON out
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200e\u200f]")


def _quote(text: str) -> str:
    """A JSON (and TOML basic) string literal that is safe to print: no control characters."""
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(text, ensure_ascii=False))


def safe_json(data: Any) -> str:
    """``json.dumps`` whose output holds no terminal control characters (server text is untrusted)."""
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(data, ensure_ascii=False))


def _key(name: str) -> str:
    return name if re.match(r"^[A-Za-z0-9_-]+$", name) else _quote(name)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        items = [f"{_key(k)} = {_value(v)}" for k, v in value.items() if v is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    return _quote(str(value))


def to_toml(data: dict[str, Any]) -> str:
    """A small TOML writer for agent records: scalars first, then ``[tables]`` (nested tables as
    their own headers), then ``[[arrays of tables]]``. ``None`` values are left out (TOML has no null)."""
    lines: list[str] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    arrays: list[tuple[str, list[dict[str, Any]]]] = []
    for key, value in data.items():
        if value is None:
            continue
        if isinstance(value, dict) and value:
            tables.append((_key(key), value))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            arrays.append((_key(key), value))
        else:
            lines.append(f"{_key(key)} = {_value(value)}")
    for name, table in tables:
        body = to_toml(table).rstrip("\n")
        lines.append("")
        lines.append(f"[{name}]")
        for ln in body.splitlines():       # nested headers get the parent's name
            if ln.startswith("["):
                bracket = "[[" if ln.startswith("[[") else "["
                ln = f"{bracket}{name}.{ln[len(bracket):]}"
            lines.append(ln)
    for name, items in arrays:
        for item in items:
            lines.append("")
            lines.append(f"[[{name}]]")
            lines.extend(f"{_key(k)} = {_value(v)}" for k, v in item.items() if v is not None)
    return "\n".join(lines).lstrip("\n") + "\n"


def bind_agent(session: dict[str, Any], ws_url: str, api_key: str | None,
               cache: dict[tuple[str, str], str] | None = None) -> dict[str, Any]:
    """``session`` with its ``agent_id`` resolved (``--agent-id NAME_OR_ID``): a UUID is kept as
    it is; any other value goes through the server's agents list (an id there, else an exact
    name). Sessions without agent_id come back unchanged. Blocking; raises the client's errors."""
    ref = session.get("agent_id")
    if not isinstance(ref, str) or not ref or UUID_RE.match(ref):
        return session
    key = (agents_url(ws_url), ref)
    if cache is not None and key in cache:
        return {**session, "agent_id": cache[key]}
    if not api_key and not is_loopback(ws_url):
        raise UsageError(f"--agent-id {clean(ref, 100)!r} is not an id, and looking its name up needs "
                         "an API key", "set ASSEMBLYAI_API_KEY, or give the agent's id")
    agent_id = AgentsClient(ws_url, api_key).resolve(ref)
    if cache is not None:
        cache[key] = agent_id
    return {**session, "agent_id": agent_id}
