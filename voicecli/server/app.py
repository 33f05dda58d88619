"""The local Voice Agent API server: :class:`LocalServer` (asyncio) and :class:`ServerThread`.

``voicecli serve`` runs ``LocalServer(ServerOptions(...)).serve_forever()``; the client's
``--local`` mode and the tests run a :class:`ServerThread` (a LocalServer on its own event loop in
a daemon thread). Transport facts (protocol.md 1.1, 1.4): JSON text frames only, no
compression, incoming messages over 1 MiB close the connection with 1009, pings every 20 s.

Per-connection URL query parameters (so one server can serve many tests):

- ``token``: temporary token (protocol.md 1.2);
- ``fault``: comma list merged over ``ServerOptions.faults`` (``Faults.parse`` syntax), e.g.
  ``?fault=drop-after-replies=1,unknown-events``;
- ``scenario``: a scripted scenario NAME, from the shipped set or from the directories the operator
  passed (``ServerOptions.scenario_dirs``, ``serve --scenario-dir``); implies ``engine=scripted``
  (``none``: no scenario, the default engines). A path is refused (``invalid_value``, a message
  that says nothing about the file system); only the in-process server of a client's own
  ``--local``/eval run (:class:`ServerThread`) accepts the file paths that client names;
- ``engine``: ``default`` | ``basic`` | ``scripted``; ``tts``: ``auto`` | ``piper`` | ``espeak`` | ``tone``.

A bad ``fault``/``scenario``/``engine``/``tts`` value is answered after the upgrade with
``session.error{code:"invalid_value", param:<name>}`` and close 1008.

Stored agents (protocol.md 6.9): the Agents REST API (``/v1/agents``, ``rest.py``) shares the
WebSocket's host and port; agents live in :attr:`LocalServer.agents` (``agents.py``, a SQLite file
several processes share), and ``session.update {agent_id}`` binds one through
:meth:`LocalServer.find_agent` (``ServerOptions.agents``, then the store, read at that moment).

Engines (``engine="default"``): the best installed ones (``voicecli.speech.available.detect``):
silero VAD + whisper tiny.en + piper (espeak for British/accent voices) with the ``speech`` extra, else
EnergyTurnDetector + DurationSTT + EspeakTTS; the brain is an :class:`~voicecli.server.llm_brain.LlmBrain`
(the session's ``llm`` entry, else ``ServerOptions.llm_url``), else EchoBrain (with whisper) or
DefaultBrain. ``engine="basic"``: the model-free engines. Models load once per process in the
background from :meth:`LocalServer.start`; a connection that arrives first waits for them. Each
connection is an :class:`~voicecli.server.agent.AgentSession` (the rules) driven by a
:class:`~voicecli.server.pump.Pump` (the I/O); engine calls other than turn detection run in the
server's worker threads (``workers.py``).

Operations (issue 9, 12): ``max_sessions`` (``at_capacity``) and ``max_sessions_per_key``
(``concurrency_exceeded``) refuse at the handshake (``session.error`` + 1008); an engine crash is
``internal_error`` + 1011 for that session only; ``enforce_session_cap`` ends a session at its
``max_session_duration_seconds`` (``session_expired`` + 1008); a connection that sends nothing
for ``idle_timeout_s`` gets ``agent_timeout`` + 1008; :meth:`LocalServer.stop` sends
``session.ended`` to every ready session and closes 1001. One log line per connection and session
event (``serverlog.py``), never a key or token.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from voicecli.protocol.constants import MAX_FRAME_BYTES
from voicecli.protocol.events import SessionError, encode_server_event

from .agent import AgentSession
from .agents import AgentStore, StoreError, default_store_path, load_agents_file, session_of
from .auth import AuthFailure, Credentials
from .engines import Brain, SpeechLike, StreamingBrain, TextToSpeech, split_clauses
from .faults import FaultyPump, refusing
from .http import make_process_request
from .llm_brain import EchoBrain, LlmBrain
from .options import Faults, ServerOptions, check_choice
from .pump import Pump
from .registry import SessionRegistry
from .rest import RestApi, rest_connection
from .scripted import Scenario, ScenarioError, ScriptedEngine, load_scenario
from .serverlog import event as log_event
from .session import EndedSession, Engines, Session
from .workers import SessionWorkers, make_pool

if TYPE_CHECKING:
    from voicecli.speech.available import Engines as SpeechEngines
    from voicecli.speech.available import Preload

log = logging.getLogger("voicecli.server")

MAX_MESSAGE_BYTES = MAX_FRAME_BYTES  # protocol.md 1.1 (inferred websockets default): 1 MiB, else close 1009
DEFAULT_SCENARIO = "echo"
NO_SCENARIO = "none"   # ?scenario=none: no scripted scenario, the default engines (and LLM, if set)
SCENARIO_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
DEFAULT_SESSION_CAP_S = 10800   # max_session_duration_seconds of a key's session (protocol.md 1.3)


def shipped_scenarios() -> list[str]:
    folder = resources.files("voicecli.server").joinpath("scenarios")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def scenario_names(dirs: tuple[str, ...] = ()) -> list[str]:
    """Every scenario a client may name: the shipped ones, then those of the operator's dirs."""
    names = shipped_scenarios()
    for folder in dirs:
        try:
            found = sorted(p.stem for p in Path(folder).iterdir()
                           if p.suffix in (".toml", ".json") and SCENARIO_NAME.fullmatch(p.stem))
        except OSError:
            continue
        names += [n for n in found if n not in names]
    return names


def find_scenario(name: str, dirs: tuple[str, ...] = ()) -> Scenario:
    """The scenario called ``name`` (shipped first, then ``dirs`` in order). ScenarioError with
    the list of names otherwise; the message never names a path."""
    if SCENARIO_NAME.fullmatch(name):
        if name in shipped_scenarios():
            return load_scenario(name)
        for folder in dirs:
            for suffix in (".toml", ".json"):
                path = Path(folder) / f"{name}{suffix}"
                if path.is_file():
                    try:
                        return load_scenario(str(path))
                    except (ScenarioError, OSError, UnicodeDecodeError) as exc:
                        log_event("scenario.unreadable", logging.WARNING, scenario=name,
                                  error=str(exc).splitlines()[0][:200])
                        raise ScenarioError(f"scenario {name!r} could not be loaded") from None
    shown = repr(name) if SCENARIO_NAME.fullmatch(name) else "(not a name)"
    raise ScenarioError(f"unknown scenario {shown}: pick one of {', '.join(scenario_names(dirs))} by name")


MAX_CLAUSE_CHARS = 240   # the longest text one synthesis call gets (one lock hold, ~0.1 s)


def cap_clauses(parts: list[str], limit: int = MAX_CLAUSE_CHARS) -> list[str]:
    """``parts`` with every part longer than ``limit`` cut at spaces (a longer word: hard)."""
    out: list[str] = []
    for part in parts:
        while len(part) > limit:
            cut = part.rfind(" ", 0, limit + 1)
            cut = cut if cut > 0 else limit
            out.append(part[:cut])
            part = part[cut:].lstrip(" ")
        if part:
            out.append(part)
    return out


class _Serialized:
    """One TTS instance shared by every session: one synthesis at a time (espeak is not
    thread-safe), whichever worker thread asks. So that no session holds it for long, a clause is
    at most :data:`MAX_CLAUSE_CHARS` (a 50 KB greeting without punctuation was one 16 s
    synthesis that every other session waited for; ``bench/server_starve.py``); the reply
    pipeline synthesizes only a few clauses ahead of playback, so memory stays bounded too."""

    def __init__(self, tts: TextToSpeech) -> None:
        self.tts = tts
        self.lock = threading.Lock()
        self._split = getattr(tts, "split_clauses", None) or split_clauses

    def split_clauses(self, text: str) -> list[str]:
        return cap_clauses(self._split(text))

    def synthesize(self, text: str, voice: str | None = None) -> SpeechLike:
        with self.lock:
            return self.tts.synthesize(text, voice)

    def __getattr__(self, name: str) -> Any:   # split_clauses, clause_gap_ms, ... of the engine
        return getattr(self.tts, name)


# Voices piper Joe (one US English voice) does not stand for: British and native-accent catalog
# voices (protocol.md 5.6) keep espeak's matching accent; "espeak" / "espeak:<name>" ask for it.
ESPEAK_ONLY_VOICES = frozenset({"anna", "charles", "paul", "vera", "sophie", "oliver", "lola", "giovanni",
                                "juergen", "rafael", "estelle"})


def wants_espeak(voice: str | None) -> bool:
    name = (voice or "").strip().lower()
    return name in ESPEAK_ONLY_VOICES or name == "espeak" or name.startswith("espeak:")


class VoiceRouter:
    """piper for most voices, espeak for the voices of :data:`ESPEAK_ONLY_VOICES` (and ``espeak``)."""

    def __init__(self, piper: TextToSpeech, espeak: TextToSpeech) -> None:
        self.piper, self.espeak = piper, espeak
        self.split_clauses = getattr(piper, "split_clauses", None) or split_clauses

    def synthesize(self, text: str, voice: str | None = None) -> SpeechLike:
        if wants_espeak(voice):
            name = (voice or "").partition(":")[2] if (voice or "").startswith("espeak") else voice
            return self.espeak.synthesize(text, name or None)
        return self.piper.synthesize(text, voice)


def make_tts(name: str, speech: SpeechEngines | None = None) -> TextToSpeech:
    """A TTS backend by name (``auto`` | ``piper`` | ``espeak`` | ``tone``)."""
    from .tts import EspeakTTS, ToneTTS

    name = check_choice("tts", name)
    if name == "tone":
        return ToneTTS()
    has_piper = speech is not None and speech.tts == "piper"
    if name == "piper" and not has_piper:
        raise ValueError("tts piper is not installed: pip install 'voicecli[speech]'")
    if name == "espeak" or not has_piper:
        return EspeakTTS()
    from voicecli.speech.piper import PiperTTS

    return VoiceRouter(PiperTTS(), EspeakTTS())


def make_engines(engine: str, scenario: Scenario | None, tts: TextToSpeech,
                 speech: SpeechEngines | None = None, llm: Any = None,
                 llm_timeout_s: float = 15.0) -> Engines:
    """Fresh per-session engines (detectors and brains keep per-session state). ``speech``: what
    :func:`voicecli.speech.available.detect` found (None: nothing, or not wanted); ``llm``: an
    :class:`~voicecli.speech.llm.LlmEndpoint` for the brain."""
    from .brain import DefaultBrain, DurationSTT
    from .vad import EnergyTurnDetector

    if engine == "scripted":
        scripted = ScriptedEngine(scenario or load_scenario(DEFAULT_SCENARIO))
        return Engines(EnergyTurnDetector(), scripted, scripted, tts)
    if engine == "basic" or speech is None:
        brain: Brain | StreamingBrain = DefaultBrain() if llm is None else LlmBrain(llm, llm_timeout_s)
        return Engines(EnergyTurnDetector(), DurationSTT(), brain, tts)
    if llm is not None:
        brain = LlmBrain(llm, llm_timeout_s)
    else:
        brain = EchoBrain() if speech.stt == "whisper" else DefaultBrain()
    return Engines(speech.turn_detector(), speech.speech_to_text(), brain, tts)


def llm_endpoint(entry: Any) -> Any:
    """A session's ``llm`` item -> LlmEndpoint (ValueError names the bad field)."""
    from voicecli.speech.llm import LlmEndpoint

    if not isinstance(entry, dict):
        raise ValueError("llm items must be objects {base_url, model, api_key}")
    return LlmEndpoint.from_config(entry)


class LocalServer:
    """A Voice Agent API server on localhost. Use from one event loop.

    ``await start()`` -> URL (``ws://HOST:PORT/v1/ws``, actual port); ``await stop()``;
    ``await serve_forever()`` (starts if needed, returns when stopped). ``session(id)`` gives a
    live or recently ended :class:`~voicecli.server.session.Session` (its ``stats``)."""

    def __init__(self, options: ServerOptions | None = None) -> None:
        self.options = options or ServerOptions()
        self.credentials = Credentials(self.options.api_key)
        self.registry = SessionRegistry(keep_ended_s=self.options.resume_window_s)
        self.registry.on_forget.append(self.credentials.forget_session)
        self.registry.on_forget.append(self._release_engines)
        self.stats: Counter[str] = Counter()  # server-wide: connections, auth_failures, ...
        self._tts: dict[str, TextToSpeech] = {}
        self._pool = make_pool()
        from voicecli.speech.available import detect

        self.speech: SpeechEngines = detect()   # what is installed (no imports, no model loads)
        self._preload: Preload | None = None
        self.llm = None
        if self.options.llm_url and self.options.llm_model:
            from voicecli.speech.llm import LlmEndpoint

            self.llm = LlmEndpoint(self.options.llm_url, self.options.llm_model, self.options.llm_api_key)
        elif self.options.llm_url:
            log.warning("voicecli server: an LLM url without a model name is ignored (VOICECLI_LLM_MODEL)")
        self._server: Server | None = None
        self._url: str | None = None
        self.agents = AgentStore(self.options.agents_store or default_store_path())
        if self.options.agents_file:
            for agent_id, agent in load_agents_file(Path(self.options.agents_file)):   # ValueError
                self.agents.create(agent, agent_id)
        self.scenario_paths = False   # ServerThread (a client's own in-process server) sets it
        self._pumps: dict[int, Pump | _Placeholder] = {}
        self._conn_ids = 0
        self._per_owner: Counter[str] = Counter()
        self.scenario_file: Scenario | None = None
        if self.options.scenario is not None:   # fail at start, with the list, not per connection
            self.scenario_file = self._operator_scenario(self.options.scenario)

    def find_agent(self, agent_id: str) -> dict[str, Any] | None:
        """The session config a stored agent stands for: ``ServerOptions.agents``, else the store
        (read now, so an agent another process just created is found)."""
        if agent_id in self.options.agents:
            return self.options.agents[agent_id]
        try:
            record = self.agents.get(agent_id)
        except StoreError as exc:
            log.error("voicecli server: %s", exc)
            return None
        return None if record is None else session_of(record)

    def _operator_scenario(self, name: str) -> Scenario:
        """``--scenario``: a name (shipped or in ``--scenario-dir``) or a file the operator named."""
        if SCENARIO_NAME.fullmatch(name) or not Path(name).expanduser().is_file():
            return find_scenario(name, self.options.scenario_dirs)
        return load_scenario(name)

    def engines_line(self) -> str:
        """The one start-up line (stderr) saying which engines serve ``engine="default"``."""
        sp, opts = self.speech, self.options
        if opts.engine == "scripted":
            return "engines: scripted scenarios (energy VAD, no STT, " + opts.tts + " TTS)"
        basic = opts.engine == "basic"
        tts = {"tone": "tone TTS (test double)", "espeak": "espeak TTS"}.get(opts.tts) or (
            "piper joe (espeak for UK/accent voices)" if sp.tts == "piper" else "espeak TTS")
        stt = "whisper tiny.en" if sp.stt == "whisper" and not basic else "no STT ([speech N s] placeholder)"
        parts = ["silero VAD" if sp.vad == "silero" and not basic else "energy VAD", stt, tts]
        if self.llm is not None:
            parts.append(f"llm {self.llm.base_url} model {self.llm.model}")
        elif stt.startswith("whisper"):
            parts.append("no llm (replies repeat what was heard; add --llm-url URL --llm-model NAME)")
        else:
            parts.append("no llm (replies say how long you spoke)")
        missing = not basic and (sp.vad != "silero" or sp.stt != "whisper" or sp.tts != "piper")
        extras = ",".join(e for e, need in (("speech", missing), ("llm", not sp.llm)) if need)
        hint = f" (pip install 'voicecli[{extras}]' for more)" if extras else ""
        return "engines: " + ", ".join(parts) + hint

    def preload(self) -> Preload:
        """Load the speech models once per process, in the background (idempotent)."""
        if self._preload is None:
            from voicecli.speech.available import preload

            self._preload = preload(self.speech, background=True)
        return self._preload

    async def speech_ready(self) -> None:
        """Wait (off the loop) until the preloaded models are in; a session arriving first waits."""
        loaded = self.preload()
        if not loaded.done.is_set():
            await asyncio.get_running_loop().run_in_executor(None, loaded.wait)

    @property
    def url(self) -> str:
        """``ws://HOST:PORT/v1/ws``; valid after :meth:`start`."""
        if self._url is None:
            raise RuntimeError("the server is not started")
        return self._url

    def session(self, session_id: str) -> Session | EndedSession | None:
        return self.registry.get(session_id)

    def _release_engines(self, session_id: str) -> None:
        """A session ended for good: its silero detector gives its model back to the pool."""
        session = self.registry.live.get(session_id)
        close = getattr(session.engines.detector, "close", None) if session is not None else None
        if callable(close):
            close()

    async def start(self) -> str:
        """Listen; returns the URL. Raises OSError if the address is taken."""
        if self._server is not None:
            return self.url
        if self.options.api_key is None:
            log.info("voicecli server: no API key set, accepting any key")
        if self.options.engine == "default":
            self.preload()
        self._server = await serve(
            self._handle, self.options.host, self.options.port,
            process_request=make_process_request(self.credentials), compression=None,
            max_size=MAX_MESSAGE_BYTES, open_timeout=max(1.0, self.options.idle_timeout_s or 10.0),
            create_connection=rest_connection(RestApi(self.agents, self.credentials)),
        )
        port = next(iter(self._server.sockets)).getsockname()[1]
        host = self.options.host
        host = f"[{host}]" if ":" in host else host
        self._url = f"ws://{host}:{port}/v1/ws"
        log.info("voicecli server listening on %s", self._url)
        return self._url

    async def stop(self) -> None:
        """Stop listening, send ``session.ended`` to every ready session and close every
        connection 1001 (going away), end all sessions."""
        server = self._server
        if server is None:
            return
        self._server = None   # a second stop() (serve_forever's) returns at once
        server.close(close_connections=False)
        for pump in list(self._pumps.values()):
            pump.shutdown()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3.0
        while self._pumps and loop.time() < deadline:   # each sends session.ended and closes
            await asyncio.sleep(0.02)
        server.close()
        await server.wait_closed()
        self.registry.close_all()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = make_pool()   # a stopped server may be started again

    async def serve_forever(self) -> None:
        """Start if needed and serve until :meth:`stop` (or cancellation)."""
        await self.start()
        assert self._server is not None
        try:
            await self._server.wait_closed()
        finally:
            await self.stop()

    def _tts_for(self, name: str) -> TextToSpeech:
        if name not in self._tts:
            self._tts[name] = _Serialized(make_tts(name, self.speech))
        return self._tts[name]

    async def _refuse(self, ws: ServerConnection, conn: int, code: str, message: str,
                      param: str | None) -> None:
        """Accept the upgrade, send ``session.error`` as the first frame, close 1008 (1.2, 1.4)."""
        self.stats[code] += 1
        log_event("connection.refused", logging.WARNING, conn=conn, code=code, param=param)
        try:
            await ws.send(encode_server_event(SessionError(code, message, param, None), time.time()))
            await ws.close(1008, message[:120])
        except ConnectionClosed:
            pass

    def _capacity(self, owner: str, faults: Faults) -> tuple[str, str] | None:
        """(code, message) when this connection must be refused for capacity, else None."""
        opts = self.options
        if faults.at_capacity or (opts.max_sessions is not None and len(self._pumps) >= opts.max_sessions):
            return "at_capacity", "The server is at capacity; try again later"
        if faults.concurrency_exceeded or (opts.max_sessions_per_key is not None
                                           and self._per_owner[owner] >= opts.max_sessions_per_key):
            return "concurrency_exceeded", "Too many concurrent sessions for this account; end one first"
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        self.stats["connections"] += 1
        self._conn_ids += 1
        conn = self._conn_ids
        request = ws.request
        assert request is not None
        url = urlsplit(request.path)
        peer = ws.remote_address
        log_event("connection.opened", conn=conn, peer=f"{peer[0]}:{peer[1]}" if peer else None,
                  path=url.path)
        query = parse_qs(url.query)
        token = query.get("token", [""])[0] or None
        try:
            identity = self.credentials.authenticate(request.headers.get("Authorization"), token,
                                                     time.time())
        except AuthFailure as exc:
            await self._refuse(ws, conn, "unauthorized", str(exc), None)
            return
        try:
            settings = self._connection_settings(query)
        except _BadQuery as exc:
            await self._refuse(ws, conn, "invalid_value", str(exc), exc.param)
            return
        faults, engine, scenario, tts = settings
        refused = self._capacity(identity.owner, faults)
        if refused is not None:
            await self._refuse(ws, conn, *refused, None)
            return
        self._per_owner[identity.owner] += 1
        self._pumps[conn] = placeholder = _Placeholder()
        try:
            await self._serve(ws, conn, identity, faults, engine, scenario, tts, placeholder)
        finally:
            self._pumps.pop(conn, None)
            self._per_owner[identity.owner] -= 1
            if self._per_owner[identity.owner] <= 0:
                del self._per_owner[identity.owner]

    async def _serve(self, ws: ServerConnection, conn: int, identity: Any, faults: Faults, engine: str,
                     scenario: Scenario | None, tts: str, placeholder: _Placeholder) -> None:
        speech = self.speech if engine == "default" else None
        if speech is not None or tts in ("auto", "piper"):
            await self.speech_ready()
        opts = self.options
        agent = AgentSession(
            opts, owner=identity.owner, max_session_duration_s=identity.max_session_duration_s,
            make_engines=lambda: make_engines(engine, scenario, self._tts_for(tts), speech, self.llm,
                                              opts.llm_timeout_s),
            make_brain=lambda entry: LlmBrain(llm_endpoint(entry), opts.llm_timeout_s),
            lookup=refusing(faults, self._lookup_for(identity)), mint_resume=self.credentials.mint_resume,
            connected=time.time(), find_agent=self.find_agent, resume_only=identity.resume_session_id,
            session_cap_s=self._session_cap(identity, faults),
        )
        workers = SessionWorkers(self._pool)
        if faults.any:
            pump: Pump = FaultyPump(ws, agent, registry=self.registry, workers=workers,
                                    options=self.options, faults=faults, conn_id=conn)
        else:
            pump = Pump(ws, agent, registry=self.registry, workers=workers, options=self.options,
                        conn_id=conn)
        self._pumps[conn] = pump
        if placeholder.stopping:
            pump.shutdown()
        await pump.run()

    def _lookup_for(self, identity: Any) -> Callable[[str], Session | None]:
        """``session.resume``'s lookup: with a resume token, only while it is still the session's
        current one (each resume replaces it; an old one resumes nothing)."""
        if identity.resume_token is None:
            return self.registry.resumable
        token = identity.resume_token

        def lookup(session_id: str) -> Session | None:
            ok = self.credentials.resume_token_current(session_id, token)
            return self.registry.resumable(session_id) if ok else None
        return lookup

    def _session_cap(self, identity: Any, faults: Faults) -> float | None:
        if faults.session_expired_s is not None:
            return float(faults.session_expired_s)
        if self.options.enforce_session_cap:
            return float(identity.max_session_duration_s or DEFAULT_SESSION_CAP_S)
        return None

    def _connection_settings(self, query: dict[str, list[str]]
                             ) -> tuple[Faults, str, Scenario | None, str]:
        """(faults, engine, scenario, tts) for one connection from options + URL query."""
        opts = self.options
        try:
            faults = Faults.parse(",".join(query.get("fault", [])), base=opts.faults)
        except ValueError as exc:
            raise _BadQuery(str(exc), "fault") from exc
        name = query.get("scenario", [""])[0] or opts.scenario
        engine = (query.get("engine") or ["scripted" if query.get("scenario") else opts.engine])[0]
        if name == NO_SCENARIO:   # e.g. VOICECLI_LOCAL_SCENARIO=none over a config's local_scenario
            name, engine = None, (query.get("engine") or ["default"])[0]
        tts = (query.get("tts") or [opts.tts])[0]
        for what, value in (("engine", engine), ("tts", tts)):
            try:
                check_choice(what, value)
            except ValueError as exc:
                raise _BadQuery(str(exc), what) from exc
        if tts == "piper" and self.speech.tts != "piper":
            raise _BadQuery("tts piper is not installed: pip install 'voicecli[speech]'", "tts")
        scenario = None
        if engine == "scripted":
            asked = query.get("scenario", [""])[0]
            try:
                if asked and asked != NO_SCENARIO:
                    scenario = self._client_scenario(asked)
                elif name and name == opts.scenario:
                    scenario = self.scenario_file
                else:
                    scenario = load_scenario(DEFAULT_SCENARIO)
            except ScenarioError as exc:
                raise _BadQuery(str(exc), "scenario") from None
        return faults, engine, scenario, tts

    def _client_scenario(self, name: str) -> Scenario:
        """``?scenario=``: a name (issue 12.13); a path only for a trusted in-process server."""
        if self.scenario_paths and not SCENARIO_NAME.fullmatch(name) and Path(name).expanduser().is_file():
            return load_scenario(name)
        return find_scenario(name, self.options.scenario_dirs)


class _Placeholder:
    """Stands in :attr:`LocalServer._pumps` for a connection whose pump is still being built."""

    def __init__(self) -> None:
        self.stopping = False

    def shutdown(self) -> None:
        self.stopping = True


class _BadQuery(ValueError):
    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


class ServerThread:
    """A :class:`LocalServer` on its own event loop in a daemon thread (client ``--local`` mode,
    tests). ``start()`` blocks until listening and returns the URL; ``stop()`` blocks until shut
    down. Usable as a context manager."""

    def __init__(self, options: ServerOptions | None = None, *, scenario_paths: bool = True) -> None:
        self.server = LocalServer(options)
        # the in-process server of the client's own --local / eval run: the scenario files that
        # client names (its config's local_scenario) are its user's own choice
        self.server.scenario_paths = scenario_paths
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def options(self) -> ServerOptions:
        return self.server.options

    def session(self, session_id: str) -> Session | EndedSession | None:
        """A live session or an ended one's record (read from another thread: fine for counters)."""
        return self.server.session(session_id)

    def start(self, timeout: float = 10.0) -> str:
        """Start the thread; returns the URL once listening (re-raises a failure to listen)."""
        if self._thread is not None:
            return self.url
        started = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._main(started, failure))
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=main, name="voicecli-server", daemon=True)
        self._thread.start()
        if not started.wait(timeout):
            raise TimeoutError("the local server did not start in time")
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self.url

    async def _main(self, started: threading.Event, failure: list[BaseException]) -> None:
        self._stopped = asyncio.Event()
        try:
            await self.server.start()
        except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
            failure.append(exc)
            started.set()
            return
        started.set()
        await self._stopped.wait()
        await self.server.stop()

    def call(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Run ``fn()`` on the server's loop and return its result (for tests poking state)."""
        assert self._loop is not None
        async def run() -> Any:
            return fn()
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the server down and join the thread."""
        if self._thread is None or self._loop is None or self._stopped is None:
            return
        self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(timeout)
        self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
