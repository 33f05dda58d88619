"""Runs ``tool.call`` events as they arrive and hands results back to the conversation.

A tool starts at once (protocol.md 6.5 step 3); its result goes through
``Conversation.submit_tool_result``, so the session's rule decides when it is sent (only while
``reply.done`` is the latest event) or whether it is dropped (interrupted reply)."""

from __future__ import annotations

import asyncio
import time

from voicecli.app.conversation import Conversation
from voicecli.protocol.events import ToolCall
from voicecli.session.client import Received
from voicecli.tools import ToolRunner


class ToolDispatcher:
    def __init__(self, conv: Conversation, runner: ToolRunner) -> None:
        self.conv = conv
        self.runner = runner
        self.tasks: set[asyncio.Task[None]] = set()
        self.outstanding = 0
        conv.listeners.append(self.on_event)

    def on_event(self, rec: Received) -> None:
        ev = rec.event
        if isinstance(ev, ToolCall) and not rec.stale:
            self.outstanding += 1
            task = asyncio.get_running_loop().create_task(self._run(ev))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _run(self, call: ToolCall) -> None:
        started = time.monotonic()
        try:
            outcome = await self.runner.run(call.name, call.arguments)
            elapsed_ms = round((time.monotonic() - started) * 1000, 1)
            kept = await self.conv.submit_tool_result(call.call_id, outcome.result, outcome.is_error)
            self.conv.output.client_event(
                "tool.result", call_id=call.call_id, name=call.name, arguments=call.arguments,
                result=outcome.result, is_error=outcome.is_error, elapsed_ms=elapsed_ms,
                status="sent" if kept and not self.conv.session.pending_tool_results else
                ("held" if kept else "dropped"))
            if not kept:
                self.conv.output.notice(f"dropped the result of {call.name}: its reply was interrupted",
                                        "debug")
        except Exception as exc:  # never let a tool task die silently
            self.conv.output.notice(f"tool {call.name} could not report its result: {exc}", "warning")
        finally:
            self.outstanding -= 1

    async def cancel(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
