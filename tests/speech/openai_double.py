"""A test double of an OpenAI-compatible chat-completions provider (a real HTTP server on loopback).

It is NOT a mock of our client: it is a small, real HTTP/1.1 server (stdlib ``http.server``) that
speaks the provider side of ``POST {base_url}/chat/completions`` with ``stream: true``, as OpenAI
documents it: ``text/event-stream``, one ``data: {chat.completion.chunk}`` event per delta, tool calls
as ``delta.tool_calls[{index, id, type, function: {name, arguments}}]`` with the arguments split over
several chunks, a ``finish_reason`` in the last chunk, then ``data: [DONE]``.

Answers are scripted: push behaviours with :meth:`OpenAIDouble.script` (a queue, one per request; when
the queue is empty the double answers ``Answer("ok")``). Every request body and its Authorization
header are recorded in :attr:`OpenAIDouble.requests`, so tests can check what the client sent.

Behaviours: :class:`Answer` (text in chunks), :class:`ToolCalls`, :class:`HttpError` (status + JSON
error body), :class:`Garbage` (a 200 stream that is not JSON), :class:`Stall` (headers, then silence),
:class:`Truncated` (some text, then the connection closes without finish_reason/[DONE]).

The server tests (phase 2) reuse this module: ``with OpenAIDouble() as llm: ... llm.base_url``.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self


@dataclass(frozen=True)
class Answer:
    text: str
    chunk_chars: int = 4  # text is cut into pieces of this many characters, one SSE event each


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]
    call_id: str = ""


@dataclass(frozen=True)
class ToolCalls:
    calls: tuple[ToolCall, ...]
    text: str = ""  # text before the calls, if any
    args_chunk_chars: int = 5  # each call's JSON arguments split into pieces this long


@dataclass(frozen=True)
class HttpError:
    status: int = 500
    message: str = "internal error"


@dataclass(frozen=True)
class Garbage:
    body: bytes = b"data: this is not json\n\n"


@dataclass(frozen=True)
class Stall:
    seconds: float


@dataclass(frozen=True)
class Truncated:
    text: str = "Half an ans"


Behaviour = Answer | ToolCalls | HttpError | Garbage | Stall | Truncated


@dataclass
class Recorded:
    path: str
    authorization: str
    body: dict[str, Any] = field(default_factory=dict)


def _chunk(delta: dict[str, Any], finish: str | None = None, model: str = "double") -> bytes:
    obj = {"id": "chatcmpl-double", "object": "chat.completion.chunk", "created": int(time.time()),
           "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _pieces(text: str, n: int) -> list[str]:
    return [text[i:i + n] for i in range(0, len(text), max(1, n))]


def answer_events(b: Answer) -> list[bytes]:
    out = [_chunk({"role": "assistant", "content": ""})]
    out += [_chunk({"content": p}) for p in _pieces(b.text, b.chunk_chars)]
    return out + [_chunk({}, "stop"), b"data: [DONE]\n\n"]


def tool_events(b: ToolCalls) -> list[bytes]:
    out = [_chunk({"role": "assistant", "content": None})]
    out += [_chunk({"content": p}) for p in _pieces(b.text, 4)]
    for i, call in enumerate(b.calls):
        first = {"index": i, "id": call.call_id or f"call_{i}", "type": "function",
                 "function": {"name": call.name, "arguments": ""}}
        out.append(_chunk({"tool_calls": [first]}))
        for p in _pieces(json.dumps(call.arguments), b.args_chunk_chars):
            out.append(_chunk({"tool_calls": [{"index": i, "function": {"arguments": p}}]}))
    return out + [_chunk({}, "tool_calls"), b"data: [DONE]\n\n"]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            body = {}
        self.server.double.requests.append(Recorded(self.path, self.headers.get("Authorization", ""), body))
        self._play(self.server.double.next_behaviour())

    def _sse_head(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def _send(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()

    def _play(self, b: Behaviour) -> None:
        if isinstance(b, HttpError):
            payload = json.dumps({"error": {"message": b.message, "type": "server_error", "code": None}})
            self.send_response(b.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self._send(payload.encode())
            return
        self._sse_head()
        if isinstance(b, Stall):
            self.server.double.stop_event.wait(b.seconds)
            return
        if isinstance(b, Garbage):
            self._send(b.body)
            return
        if isinstance(b, Truncated):
            for ev in answer_events(Answer(b.text))[:-2]:
                self._send(ev)
            return
        for ev in answer_events(b) if isinstance(b, Answer) else tool_events(b):
            self._send(ev)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    double: OpenAIDouble


class OpenAIDouble:
    """Start with ``with OpenAIDouble() as llm:`` (or :meth:`start`/:meth:`stop`); point the client at
    :attr:`base_url`. Thread-safe: the script is a queue, the record a list appended by handlers."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Behaviour] = queue.Queue()
        self.requests: list[Recorded] = []
        self.stop_event = threading.Event()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.double = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="openai-double", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def script(self, *behaviours: Behaviour) -> None:
        for b in behaviours:
            self._queue.put(b)

    def next_behaviour(self) -> Behaviour:
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return Answer("ok")

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()  # releases stalled handlers
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
