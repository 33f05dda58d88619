"""OpenAI-compatible streaming chat completions: the brain behind a session's ``llm`` entry.

A session (or stored agent) may name its own model: ``llm: [{base_url, model, api_key}]``, one entry,
an OpenAI-compatible *streaming* endpoint (protocol.md 5.2, 6.9). audio-lab.md 7.4: no trustworthy
small instruct model ships in a package, so this endpoint (Ollama, llama.cpp's server, vLLM, LM
Studio or a hosted API) is the brain. Keep the system prompt and tools stable across turns so the
provider's prefix cache holds (7.4: 0.30 s to the first token cached, 3.6 s cold).

Client library: the official ``openai`` package (extra ``llm``), with retries off (the server decides
what to do with a failure: ``reply.error`` then a spoken apology, protocol.md 4.15). Every failure,
whatever layer it comes from (httpx, openai, JSON, a stream cut short), becomes one :class:`LlmError`.

The api_key is a secret: it goes only into the ``Authorization`` header. It is never logged, never put
in an error message, and :class:`LlmEndpoint`'s repr masks it.
"""

from __future__ import annotations

import json
import sys
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from voicecli.server.engines import TextDelta, ToolCallRequest  # the one definition of each

CONNECT_TIMEOUT_S = 5.0

# LlmError codes (the server copies them into reply.error.code, protocol.md 4.15)
CONNECTION_FAILED = "llm_connection_failed"  # refused, DNS, TLS, reset before a response
TIMEOUT = "llm_timeout"  # no byte from the provider for timeout_s
HTTP_ERROR = "llm_http_error"  # a non-2xx response; status_code set
BAD_STREAM = "llm_bad_stream"  # not SSE/JSON, an error event, unparseable tool arguments
STREAM_TRUNCATED = "llm_stream_truncated"  # the stream ended before a finish_reason
NOT_INSTALLED = "llm_not_installed"  # the `llm` extra (openai) is missing


class LlmError(Exception):
    """One failure of a chat completion. ``retryable``: trying the same request again may work
    (connection, timeout, 408/409/429/5xx, truncated stream). ``status_code``: the HTTP status, if
    the provider answered with one. ``message`` never contains the api_key."""

    def __init__(self, code: str, message: str, retryable: bool, status_code: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable
        self.status_code = status_code


@dataclass(frozen=True, slots=True)
class LlmEndpoint:
    """One ``llm`` entry (protocol.md 6.9). ``base_url`` ends before ``/chat/completions``
    (e.g. ``http://127.0.0.1:11434/v1``)."""

    base_url: str
    model: str
    api_key: str = field(default="", repr=False)

    def __repr__(self) -> str:
        masked = "***" if self.api_key else ""
        return f"LlmEndpoint(base_url={self.base_url!r}, model={self.model!r}, api_key={masked!r})"

    @classmethod
    def from_config(cls, entry: Mapping[str, Any]) -> LlmEndpoint:
        """From a session/agent ``llm`` item; ValueError (naming the field) when one is missing."""
        for name in ("base_url", "model"):
            if not isinstance(entry.get(name), str) or not entry[name]:
                raise ValueError(f"llm.{name} must be a non-empty string")
        api_key = entry.get("api_key")
        return cls(str(entry["base_url"]), str(entry["model"]), api_key if isinstance(api_key, str) else "")


StreamItem = TextDelta | ToolCallRequest


def openai_tools(tools: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Voice-agent tools (flat, protocol.md 5.7) -> OpenAI's nested function tools.

    Only ``name``, ``description`` and ``parameters`` are kept; voice-agent extras (execution_mode,
    timeout_seconds, http, ...) mean nothing to the model. Entries that are not function tools or
    have no name are skipped. A missing ``parameters`` becomes an empty object schema.
    """
    out: list[dict[str, Any]] = []
    for tool in tools:
        if tool.get("type", "function") != "function" or not tool.get("name"):
            continue
        params = tool.get("parameters")
        if not isinstance(params, Mapping):
            params = {"type": "object", "properties": {}}
        fn = {"name": str(tool["name"]), "description": str(tool.get("description") or ""),
              "parameters": dict(params)}
        out.append({"type": "function", "function": fn})
    return out


def assistant_message(text: str, calls: Sequence[ToolCallRequest]) -> dict[str, Any]:
    """The assistant turn to append to ``messages`` after a reply that made tool calls."""
    msg: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        msg["tool_calls"] = [{"id": c.call_id, "type": "function",
                              "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
                             for c in calls]
    return msg


def tool_message(call_id: str, result: str) -> dict[str, Any]:
    """The ``tool`` message carrying one tool's result back to the model."""
    return {"role": "tool", "tool_call_id": call_id, "content": result}


# --------------------------------------------------------------------------- client cache

_CLIENTS: dict[tuple[str, str, float], Any] = {}
_CLIENTS_LOCK = threading.Lock()


def _client(endpoint: LlmEndpoint, timeout_s: float) -> Any:
    """One openai client (one httpx connection pool) per endpoint and timeout, shared by threads
    (httpx.Client is thread-safe)."""
    try:
        import openai
    except ImportError as e:  # pragma: no cover - depends on the install
        raise LlmError(NOT_INSTALLED, "install voicecli[llm] (the openai package)", False) from e
    key = (endpoint.base_url, endpoint.api_key, timeout_s)
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            timeout = openai.Timeout(timeout_s, connect=min(CONNECT_TIMEOUT_S, timeout_s))
            # A provider without auth (a local Ollama) still gets a header: openai requires a key.
            client = openai.OpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key or "none",
                                   timeout=timeout, max_retries=0)
            _CLIENTS[key] = client
        return client


# --------------------------------------------------------------------------- streaming


@dataclass(slots=True)
class _PartialCall:
    call_id: str = ""
    name: str = ""
    arguments: str = ""


def _finish_calls(parts: dict[int, _PartialCall]) -> list[ToolCallRequest]:
    calls: list[ToolCallRequest] = []
    for _, part in sorted(parts.items()):
        try:
            args = json.loads(part.arguments) if part.arguments.strip() else {}
        except ValueError as e:
            raise LlmError(BAD_STREAM, f"tool {part.name!r}: arguments are not JSON ({e})", True) from e
        if not isinstance(args, dict):
            raise LlmError(BAD_STREAM, f"tool {part.name!r}: arguments are not a JSON object", True)
        if not part.name:
            raise LlmError(BAD_STREAM, "a tool call without a name", True)
        calls.append(ToolCallRequest(name=part.name, arguments=args,
                                     call_id=part.call_id or f"call_{uuid.uuid4().hex[:24]}"))
    return calls


def _absorb_tool_deltas(parts: dict[int, _PartialCall], deltas: Sequence[Any]) -> None:
    """OpenAI streams a call as: the first delta has index, id and name; the rest append argument
    fragments to the same index."""
    for d in deltas:
        index = d.index if isinstance(d.index, int) else len(parts)
        part = parts.setdefault(index, _PartialCall())
        part.call_id = part.call_id or (d.id or "")
        fn = d.function
        if fn is not None:
            part.name = part.name or (fn.name or "")
            part.arguments += fn.arguments or ""


def _items(stream: Any) -> Iterator[StreamItem]:
    parts: dict[int, _PartialCall] = {}
    finished = False
    for chunk in stream:
        for choice in chunk.choices or ():
            delta = choice.delta
            if delta is not None and delta.content:
                yield TextDelta(delta.content)
            if delta is not None and delta.tool_calls:
                _absorb_tool_deltas(parts, delta.tool_calls)
            finished = finished or choice.finish_reason is not None
    if not finished:
        raise LlmError(STREAM_TRUNCATED, "the stream ended before a finish_reason", True)
    yield from _finish_calls(parts)


def _translate(e: Exception, endpoint: LlmEndpoint) -> LlmError:
    """Any failure below us -> LlmError. Messages name the base_url, never the key."""
    import openai

    where = endpoint.base_url
    if isinstance(e, LlmError):
        return e
    if isinstance(e, (openai.APITimeoutError, *_transport_errors("TimeoutException"))):
        return LlmError(TIMEOUT, f"{where}: no answer in time", True)
    if isinstance(e, openai.APIStatusError):
        code = e.status_code
        retry = code in (408, 409, 429) or code >= 500
        return LlmError(HTTP_ERROR, f"{where}: HTTP {code}: {_short(e.message)}", retry, code)
    if isinstance(e, openai.APIConnectionError):
        return LlmError(CONNECTION_FAILED, f"{where}: cannot connect ({_short(str(e.__cause__ or e))})", True)
    if isinstance(e, _transport_errors("RemoteProtocolError")):
        return LlmError(STREAM_TRUNCATED, f"{where}: the stream was cut ({_short(str(e))})", True)
    if isinstance(e, _transport_errors("TransportError")):
        return LlmError(CONNECTION_FAILED, f"{where}: {_short(str(e))}", True)
    if isinstance(e, openai.APIError):  # an SSE error event
        return LlmError(BAD_STREAM, f"{where}: provider error: {_short(e.message)}", False)
    return LlmError(BAD_STREAM, f"{where}: malformed stream ({type(e).__name__}: {_short(str(e))})", False)


def _transport_errors(name: str) -> tuple[type[BaseException], ...]:
    """Exception class ``name`` of the HTTP library under openai (httpx for openai 1.x-2.x, httpx2 for
    3.x; both if both are loaded). These can escape unwrapped while a stream is being read."""
    mods = [sys.modules[m] for m in ("httpx2", "httpx") if m in sys.modules]
    return tuple(getattr(m, name) for m in mods if isinstance(getattr(m, name, None), type))


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def stream_chat(endpoint: LlmEndpoint, messages: Sequence[Mapping[str, Any]],
                tools: Sequence[Mapping[str, Any]] = (), timeout_s: float = 30.0) -> Iterator[StreamItem]:
    """Stream one chat completion. Blocking generator: call it from a worker thread.

    ``messages``: OpenAI chat messages, oldest first (see :func:`assistant_message`,
    :func:`tool_message`). ``tools``: voice-agent tools as in the session config (protocol.md 5.7),
    converted by :func:`openai_tools`. ``timeout_s`` bounds the connect and every wait for the next
    byte (first token included), not the whole answer, so a long spoken reply is never cut.

    Yields :class:`TextDelta` as text arrives, then each :class:`ToolCallRequest` (complete, JSON
    arguments parsed) once the provider finishes. Raises :class:`LlmError` for every failure, possibly
    after some deltas were yielded: the caller has already spoken those, and says sorry after them.
    Closing the generator early closes the HTTP response.
    """
    client = _client(endpoint, timeout_s)
    kwargs: dict[str, Any] = {"model": endpoint.model, "messages": list(messages), "stream": True}
    fn_tools = openai_tools(tools)
    if fn_tools:
        kwargs["tools"] = fn_tools
    stream: Any = None
    try:
        stream = client.chat.completions.create(**kwargs)
        yield from _items(stream)
    except GeneratorExit:
        raise
    except Exception as e:
        raise _translate(e, endpoint) from e
    finally:
        if stream is not None:
            stream.close()
