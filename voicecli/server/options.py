"""Settings of the local server (``voicecli serve``) and its fault switches.

:class:`ServerOptions` is everything :class:`voicecli.server.app.LocalServer` needs; the CLI builds
one from flags and calls ``LocalServer(options).serve_forever()``. :class:`Faults` are misbehaviours
a client must survive (network drops, refused resumes, unknown events, slow or garbled starts). They
are set server-wide (``ServerOptions.faults``, the CLI's ``--fault`` list) or per connection with the
URL query ``?fault=drop-after-replies=1,refuse-resume`` (merged over the server-wide ones), so one
server can serve many tests.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Literal

from voicecli.protocol.constants import RESUME_WINDOW_S

# default: the best installed engines (voicecli/speech: silero, whisper, piper; an LLM if one is
# configured); basic: energy VAD + "[speech N s]" placeholder, no models (fast tests); scripted.
ENGINES = ("default", "basic", "scripted")
# auto: piper when installed (espeak for voices it maps to espeak), else espeak; tone: test double.
TTS_BACKENDS = ("auto", "piper", "espeak", "tone")
LLM_URL_ENV, LLM_MODEL_ENV, LLM_KEY_ENV = "VOICECLI_LLM_URL", "VOICECLI_LLM_MODEL", "VOICECLI_LLM_API_KEY"


def check_choice(what: str, value: str) -> str:
    """The one validation of engine and TTS names (``what``: ``engine`` | ``tts``), for
    :class:`ServerOptions` and the per-connection URL query alike. Raises ValueError."""
    choices = ENGINES if what == "engine" else TTS_BACKENDS
    if value not in choices:
        raise ValueError(f"{what} must be one of {', '.join(choices)}, not {value!r}")
    return value

# spec name -> (field name, takes an integer value)
_FAULT_NAMES: dict[str, tuple[str, bool]] = {
    "drop-after-replies": ("drop_after_replies", True),
    "drop-mid-reply": ("drop_mid_reply", False),
    "refuse-resume": ("refuse_resume", False),
    "unknown-events": ("unknown_events", False),
    "ready-delay": ("ready_delay_ms", True),
    "ready-delay-ms": ("ready_delay_ms", True),
    "garbage": ("garbage", False),
    "at-capacity": ("at_capacity", False),
    "concurrency-exceeded": ("concurrency_exceeded", False),
    "internal-error": ("internal_error", True),
    "session-expired": ("session_expired_s", True),
}


@dataclass(frozen=True, slots=True)
class Faults:
    """Deliberate misbehaviour, for testing clients.

    - ``drop_after_replies=N``: abort the TCP connection (no close frame; the client sees 1006)
      right after the Nth ``reply.done{completed}`` of the connection (greeting included).
    - ``drop_mid_reply``: instead, abort in the middle of the Nth reply (N = ``drop_after_replies``
      or 1): after 400 ms of its audio, or before its end when it is shorter.
    - ``refuse_resume``: answer every ``session.resume`` with ``session_not_found`` + 1008, as the
      live service did in Sept 2026 (protocol.md 6.7).
    - ``unknown_events``: add unknown fields to every event and unknown event types to the stream
      (clients must ignore both, protocol.md 2).
    - ``ready_delay_ms``: extra delay before ``session.ready``.
    - ``garbage``: one non-JSON text frame right after ``session.ready``.
    - ``at_capacity``: refuse every connection at the handshake with ``session.error
      at_capacity`` + 1008 (as ``serve --max-sessions`` does when full).
    - ``concurrency_exceeded``: the same with ``concurrency_exceeded`` (``--max-sessions-per-key``).
    - ``internal_error=N``: the engine crashes in the Nth reply of the connection (the greeting
      counts): ``session.error internal_error`` + 1011, the session ends.
    - ``session_expired_s=S``: the session's cap is S seconds: ``session_expired`` + 1008 then
      (as ``serve --enforce-session-cap`` does at ``max_session_duration_seconds``).
    """

    drop_after_replies: int | None = None
    drop_mid_reply: bool = False
    refuse_resume: bool = False
    unknown_events: bool = False
    ready_delay_ms: int = 0
    garbage: bool = False
    at_capacity: bool = False
    concurrency_exceeded: bool = False
    internal_error: int | None = None
    session_expired_s: int | None = None

    @classmethod
    def parse(cls, spec: str, base: Faults | None = None) -> Faults:
        """Read a comma list such as ``"drop-after-replies=1,refuse-resume,ready-delay=500"``.

        Names take ``-`` or ``_``; flags take no value (or ``=1``/``=0``/``true``/``false``).
        Values override ``base`` (default: no faults). Raises ValueError naming the bad item."""
        values: dict[str, Any] = {} if base is None else dataclasses.asdict(base)
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            name, sep, raw = item.partition("=")
            key = name.strip().lower().replace("_", "-")
            if key not in _FAULT_NAMES:
                known = ", ".join(sorted(_FAULT_NAMES))
                raise ValueError(f"unknown fault {name.strip()!r} (known faults: {known})")
            attr, takes_int = _FAULT_NAMES[key]
            raw = raw.strip()
            if takes_int:
                if not sep or not raw.isdigit():
                    raise ValueError(f"fault {key!r} needs a whole number, like {key}=1")
                values[attr] = int(raw)
            elif not sep or raw.lower() in ("1", "true", "yes", "on"):
                values[attr] = True
            elif raw.lower() in ("0", "false", "no", "off"):
                values[attr] = False
            else:
                raise ValueError(f"fault {key!r} is a switch; write {key} or {key}=0")
        return cls(**values)

    @property
    def any(self) -> bool:
        """True when at least one fault is on."""
        return self != Faults()


@dataclass(slots=True)
class ServerOptions:
    """How a :class:`~voicecli.server.app.LocalServer` behaves.

    ``api_key=None`` accepts any Bearer key (the server logs that it does), but a connection with
    no credential at all is still refused. ``port=0`` picks a free port (read it back from
    ``LocalServer.url``). ``engine="scripted"`` uses ``scenario`` (a shipped scenario name or a
    TOML/JSON path); a connection may pick another one with ``?scenario=NAME_OR_PATH``.
    ``agents`` maps stored ``agent_id`` values to the session config they stand for (protocol.md
    5.1), in memory; other ids are looked up in the agents store (``agents_store``: a path, None =
    the user's default store, ``server/agents.py``), which the Agents REST API writes;
    ``agents_file``: a TOML file of ``[[agents]]`` written into the store at start (``serve
    --agents``). Any other ``agent_id`` gets ``agent_not_found``.
    """

    host: str = "127.0.0.1"
    port: int = 8765
    api_key: str | None = None
    engine: Literal["default", "basic", "scripted"] = "default"
    scenario: str | None = None
    tts: Literal["auto", "piper", "espeak", "tone"] = "auto"
    # The server-wide LLM brain (a session's own ``llm`` entry wins). Defaults from the environment
    # (VOICECLI_LLM_URL / VOICECLI_LLM_MODEL / VOICECLI_LLM_API_KEY), so ``--local`` clients get it
    # too; the key is never taken from a flag (shell history, ps) and never logged.
    llm_url: str | None = field(default_factory=lambda: os.environ.get(LLM_URL_ENV) or None)
    llm_model: str | None = field(default_factory=lambda: os.environ.get(LLM_MODEL_ENV) or None)
    llm_api_key: str = field(default_factory=lambda: os.environ.get(LLM_KEY_ENV, ""), repr=False)
    llm_timeout_s: float = 15.0
    resume_window_s: float = RESUME_WINDOW_S
    # Reply audio goes out ``reply_speedup`` x faster than real time (the service imitation we test
    # against sends at ~2x), never more than ``reply_lead_ms`` ahead of what the client has played.
    reply_lead_ms: int = 3000
    reply_speedup: float = 2.0
    reply_chunk_ms: int = 40
    enforce_realtime: bool = True
    burst_allowance_ms: int = 1000
    greeting_delay_ms: int = 0
    session_lifetime_s: int = 3600
    faults: Faults = field(default_factory=Faults)
    agents: dict[str, dict[str, Any]] = field(default_factory=dict)
    agents_store: str | None = None
    agents_file: str | None = None
    # Operations limits (None: no limit). max_sessions: concurrent connections (at_capacity at the
    # handshake); max_sessions_per_key: per API key / token owner (concurrency_exceeded);
    # enforce_session_cap: end sessions at max_session_duration_seconds (session_expired);
    # idle_timeout_s: a connection without session.update/resume is closed (agent_timeout; 0: never).
    max_sessions: int | None = None
    max_sessions_per_key: int | None = None
    enforce_session_cap: bool = False
    idle_timeout_s: float = 10.0
    # Directories the operator allows ?scenario=NAME to pick <NAME>.toml/.json from (after the shipped set).
    scenario_dirs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_choice("engine", self.engine)
        check_choice("tts", self.tts)
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0-65535, not {self.port}")
        if self.reply_speedup < 1.0:
            raise ValueError("reply_speedup must be at least 1 (real time)")
        if self.reply_chunk_ms <= 0:
            raise ValueError("reply_chunk_ms must be positive")
        if self.reply_lead_ms < 0 or self.greeting_delay_ms < 0 or self.resume_window_s < 0:
            raise ValueError("reply_lead_ms, greeting_delay_ms and resume_window_s must not be negative")
