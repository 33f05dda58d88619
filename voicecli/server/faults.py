"""Fault injection as a wrapper around the pump (the switches are :class:`~voicecli.server.options.Faults`).

:class:`FaultyPump` overrides two seams of the pump: what goes on the socket
(:meth:`FaultyPump.send_event`: unknown fields and events, a garbage frame, a dropped connection)
when a timer fires (:meth:`FaultyPump.arm`: a late ``session.ready``) and the reply pipeline
(:meth:`FaultyPump.produce_reply`: an engine crash, ``internal-error``). Refusals at the handshake
(``at-capacity``, ``concurrency-exceeded``) and the session cap (``session-expired``) are applied
by the server (``app.py``) where the real ones are. :func:`refusing` wraps
the session lookup so that every ``session.resume`` finds nothing. The agent session (the protocol
rules) never sees a fault.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from itertools import count

from websockets.asyncio.server import ServerConnection

from voicecli.protocol.events import ReplyAudio, ServerEvent, UnknownEvent, server_event_to_dict

from .agent import READY_TIMER, AgentSession
from .codec import bytes_per_ms
from .effects import ReplyJob
from .options import Faults, ServerOptions
from .pump import Pump
from .registry import SessionRegistry
from .session import Session
from .workers import SessionWorkers

UNKNOWN_EVENT_TYPES = ("conversation.item.created", "rate_limits.updated", "x.local.heartbeat")
DROP_MID_REPLY_MS = 400.0   # drop-mid-reply: audio of the reply sent before the drop (if it has that much)


class EngineCrash(RuntimeError):
    """The crash the ``internal-error`` fault injects."""


def refusing(faults: Faults, lookup: Callable[[str], Session | None]) -> Callable[[str], Session | None]:
    """The lookup ``session.resume`` uses: finds nothing with ``refuse_resume`` (6.7 live reality)."""
    if not faults.refuse_resume:
        return lookup
    return lambda session_id: None


class FaultyPump(Pump):
    """A pump that misbehaves as ``faults`` say (see :class:`~voicecli.server.options.Faults`)."""

    def __init__(self, ws: ServerConnection, agent: AgentSession, *, registry: SessionRegistry,
                 workers: SessionWorkers, options: ServerOptions, faults: Faults, conn_id: int = 0) -> None:
        super().__init__(ws, agent, registry=registry, workers=workers, options=options, conn_id=conn_id)
        self.faults = faults
        self._replies_run = 0
        self._seq = count(1)
        self._started = 0
        self._completed = 0
        self._cut_reply: str | None = None   # drop-mid-reply: the reply to cut
        self._cut_ms = 0.0
        self._dropping = False

    def encode(self, event: ServerEvent) -> str:
        raw = server_event_to_dict(event, time.time())
        if self.faults.unknown_events:  # clients must ignore unknown fields (protocol.md 2)
            raw["x_local_debug"] = {"seq": next(self._seq), "note": "unknown field"}
        return json.dumps(raw, separators=(",", ":"), ensure_ascii=False)

    def send_event(self, event: ServerEvent) -> None:
        if self._dropping:
            return
        f = self.faults
        rid = getattr(event, "reply_id", None)
        if self._cut_reply is not None and rid == self._cut_reply \
                and event.type in ("transcript.agent", "reply.done", "tool.call"):
            self._drop("drop-mid-reply")   # a short reply: cut before its end
            return
        super().send_event(event)
        if event.type in ("session.ready", "reply.started") and f.unknown_events:
            n = next(self._seq)
            super().send_event(UnknownEvent(UNKNOWN_EVENT_TYPES[n % len(UNKNOWN_EVENT_TYPES)], {"seq": n}))
        if event.type == "session.ready" and f.garbage:
            self.emit("this is not JSON {")
        if event.type == "reply.started":
            self._started += 1
            if f.drop_mid_reply and self._started == (f.drop_after_replies or 1):
                self._cut_reply = rid
        elif isinstance(event, ReplyAudio) and rid == self._cut_reply:
            encoding = self._output_encoding()
            self._cut_ms += len(event.data) / bytes_per_ms(encoding)
            if self._cut_ms >= DROP_MID_REPLY_MS:
                self._drop("drop-mid-reply")
        elif event.type == "reply.done" and getattr(event, "status", "") == "completed":
            self._completed += 1
            if f.drop_after_replies and not f.drop_mid_reply and self._completed == f.drop_after_replies:
                self._drop(f"drop-after-replies={f.drop_after_replies}")

    def _output_encoding(self) -> str:
        session = self.agent.session
        fmt = session.config["output"].get("format") if session is not None else None
        return str((fmt or {}).get("encoding", "audio/pcm"))

    def _drop(self, why: str) -> None:
        """Abort the connection once everything queued so far is on the socket."""
        self._dropping = True
        self.emit(lambda: self.abort(why))

    async def produce_reply(self, job: ReplyJob) -> None:
        """``internal-error=N``: the engine crashes in the Nth reply of the connection."""
        self._replies_run += 1
        if self.faults.internal_error and self._replies_run == self.faults.internal_error:
            raise EngineCrash(f"fault internal-error={self.faults.internal_error}: the engine crashed")
        await super().produce_reply(job)

    def arm(self, name: str, at: float) -> None:
        super().arm(name, at + (self.faults.ready_delay_ms / 1000.0 if name == READY_TIMER else 0.0))
