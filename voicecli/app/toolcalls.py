"""Runs ``tool.call`` events as they arrive and hands results back to the conversation.

A tool starts at once (protocol.md 6.5 step 3) when one of the runner's ``concurrency`` slots is
free, else it queues for one; a reply's calls beyond the runner's ``per_reply`` are not run: each gets
an ``is_error`` result saying why at once (the server is never left waiting). Its result goes through
``Conversation.submit_tool_result``, so the session's rule decides when it is sent (only while
``reply.done`` is the latest event) or whether it is dropped (interrupted reply)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from voicecli.app.conversation import Conversation
from voicecli.protocol.events import ReplyDone, ReplyStarted, ToolCall
from voicecli.session.client import Received
from voicecli.tools import ToolOutcome, ToolRunner, error_result


class ToolDispatcher:
    """One ``voicecli.tool.result`` client event per call, when its fate is known: ``sent`` (the
    frame went out, so it follows the ``reply.done`` that released it), or ``dropped`` (its reply
    was interrupted or superseded). A result held for ``reply.done`` is reported then."""

    def __init__(self, conv: Conversation, runner: ToolRunner) -> None:
        self.conv = conv
        self.runner = runner
        self.tasks: set[asyncio.Task[None]] = set()
        self.held: dict[str, dict[str, Any]] = {}   # call_id -> event fields, waiting for reply.done
        self.per_reply: dict[str, int] = {}         # reply_id -> its calls running or queued
        self.refused: dict[str, int] = {}           # reply_id -> its calls answered "too many"
        conv.listeners.append(self.on_event)

    def on_event(self, rec: Received) -> None:
        ev = rec.event
        if isinstance(ev, ToolCall) and not rec.stale:
            reply = rec.reply_id or ""
            count = self.per_reply.get(reply, 0)
            if count >= self.runner.per_reply:
                work = self._refuse(ev, reply)
            else:
                self.per_reply[reply] = count + 1
                work = self._run(ev, reply)
            task = asyncio.get_running_loop().create_task(work)
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        elif isinstance(ev, (ReplyDone, ReplyStarted)) and self.held:
            for call_id in list(self.held):
                self._report(call_id, self.held.pop(call_id))

    def _report(self, call_id: str, fields: dict[str, Any]) -> None:
        status = self.conv.session.tool_result_state(call_id)
        if status == "held":
            self.held[call_id] = fields
            return
        self.conv.output.client_event("tool.result", call_id=call_id, **fields, status=status)
        if status == "dropped":
            self.conv.output.notice(f"dropped the result of {fields['name']}: the agent moved on "
                                    "(its reply was interrupted or a newer one started)", "debug")

    async def _run(self, call: ToolCall, reply: str) -> None:
        started = time.monotonic()
        try:
            outcome = await self.runner.run(call.name, call.arguments)
        finally:
            left = self.per_reply.get(reply, 1) - 1
            if left > 0:
                self.per_reply[reply] = left
            else:
                self.per_reply.pop(reply, None)
        await self._submit(call, outcome, round((time.monotonic() - started) * 1000, 1))

    async def _refuse(self, call: ToolCall, reply: str) -> None:
        limit = self.runner.per_reply
        if reply not in self.refused:
            self.conv.output.notice(f"the server asked for more than {limit} tool calls in one reply; "
                                    "answering the excess with an error instead of running them "
                                    "(raise max_tool_calls in the config to allow more)", "warning")
        self.refused[reply] = self.refused.get(reply, 0) + 1
        while len(self.refused) > 64:                   # remember recent replies only
            del self.refused[next(iter(self.refused))]
        await self._submit(call, error_result(
            f"not run: this reply already has {limit} tool calls running or waiting, the most this "
            "client runs for one reply; make fewer calls per reply"), 0.0)

    async def _submit(self, call: ToolCall, outcome: ToolOutcome, elapsed_ms: float) -> None:
        try:
            await self.conv.submit_tool_result(call.call_id, outcome.result, outcome.is_error)
            self._report(call.call_id, dict(name=call.name, arguments=call.arguments, result=outcome.result,
                                            is_error=outcome.is_error, elapsed_ms=elapsed_ms))
        except Exception as exc:  # never let a tool task die silently
            self.conv.output.notice(f"tool {call.name} could not report its result: {exc}", "warning")

    async def cancel(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
