"""``voicecli ask FILE...``: each audio file is one user turn (cli-contract.md).

The files are decoded before connecting (a bad file fails first, exit 6). After ``session.ready``
(and the greeting, if the session has one) each turn streams its file in ``chunk_ms`` chunks at
real-time pace, then keeps streaming silence like an open microphone would, so the server's
turn detection always sees the end of the turn; the turn is over when a reply completes with no
tool call pending (a reply that made tool calls is followed by the server's follow-up reply).

The pieces here (:class:`TurnTracker`, :class:`SilencePump`, :func:`run_script`) are also the
runner under ``voicecli eval`` (:mod:`voicecli.app.eval_run`): one runner, two front ends.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicecli.app.conversation import ConnectionSettings, Conversation
from voicecli.app.toolcalls import ToolDispatcher
from voicecli.audio.files import AudioSource, DecodedAudio, chunk_pcm, silence
from voicecli.audio.wav import WavStream
from voicecli.errors import AudioError, ExpectationFailed, ServerError, TimeoutExpired
from voicecli.protocol.constants import pcm_seconds
from voicecli.protocol.events import (
    ConversationMessage,
    InputSpeechStopped,
    ReplyAudio,
    ReplyCreate,
    ReplyDone,
    ReplyStarted,
    SessionError,
    ToolCall,
    TranscriptAgent,
    TranscriptAgentDelta,
    TranscriptUser,
)
from voicecli.session.client import Received
from voicecli.tools import ToolRunner
from voicecli.ui.output import JsonOutput, Output
from voicecli.ui.sanitize import clean


@dataclass
class AskOptions:
    pace: str = "realtime"            # realtime | fast
    chunk_ms: int = 50
    trailing_silence_ms: int = 1000
    timeout_s: float = 30.0           # per turn, from the end of the file
    save_reply: Path | None = None
    barge_in_after_ms: int | None = None   # start the next file this long into the agent's reply
    expect: list[str] = field(default_factory=list)   # regex per turn, in order; checked at the end
    play: bool = False                # --play: the agent's audio on the speaker as it arrives
    output_device: str | None = None  # --output-device for --play


@dataclass(frozen=True)
class ScriptTurn:
    """One user turn of a script: spoken (``pcm``, PCM16 24 kHz mono, or ``source``, a file streamed
    block by block) or typed (``text``:
    ``conversation.message`` + ``reply.create``). ``silence_ms``: open-mic silence before it;
    ``barge_in_after_ms``: start it this long into the previous turn's reply (not after it)."""

    name: str
    pcm: bytes | None = None
    text: str | None = None
    source: AudioSource | None = None     # a file decoded as it is streamed (ask); else ``pcm``
    silence_ms: int = 0
    barge_in_after_ms: int | None = None


RATE_VIOLATION = "audio_rate_violation"


def speak(text: str, voice: str | None = None) -> bytes:
    """``say`` text as PCM16 24 kHz mono, synthesized locally (espeak-ng, the TTS the local server
    ships; no network). The one synthesis of ``ask --say`` and eval's ``say`` turns. Raises
    AudioError when espeak-ng is missing or the text makes no sound."""
    from voicecli.server.tts import EspeakTTS
    try:
        pcm = EspeakTTS().synthesize(text, voice).pcm
    except RuntimeError as exc:
        raise AudioError(f"cannot synthesize {text!r}: {exc}",
                         "install espeak-ng, or give an audio file instead") from None
    if not pcm:
        raise AudioError(f"{text!r} synthesizes to no audio", "use words")
    return pcm


@dataclass
class _Turn:
    index: int
    done: asyncio.Future[None]          # its reply completed (no follow-up owed)
    first_audio: asyncio.Future[float]  # when the reply's first audio arrived
    speech_stopped_at: float | None = None
    user_text: str = ""
    agent_text: list[str] = field(default_factory=list)
    # reply_id -> (start_ms, delta) of a reply whose final transcript has not come yet
    partial: dict[str, list[tuple[int | None, str]]] = field(default_factory=dict)
    reply_audio_ms: dict[str, float] = field(default_factory=dict)  # reply_id -> audio received
    rate_violation: str | None = None   # the server dropped audio sent during this turn
    tool_calls: list[ToolCall] = field(default_factory=list)
    interrupted: bool = False           # one of its replies ended interrupted
    reply_bytes: int = 0                # agent audio received for it

    @property
    def first_audio_at(self) -> float | None:
        return self.first_audio.result() if self.first_audio.done() else None

    @property
    def latency_ms(self) -> float | None:
        """End of the user's speech (``input.speech.stopped``; a typed turn: when it was sent)
        -> first reply audio, by the client's clock."""
        first = self.first_audio_at
        if first is None or self.speech_stopped_at is None:
            return None
        return round((first - self.speech_stopped_at) * 1000, 1)


class TurnTracker:
    """Decides when a turn's reply is complete; collects per-turn transcripts, tool calls,
    interruptions, agent audio and latency. Reply events are attributed to the turn that was
    current when the reply started (by ``reply_id``), so an interrupted reply's ``reply.done``
    lands on its own turn even after the next turn (the barge-in) has begun."""

    def __init__(self, conv: Conversation, keep_audio: bool = False,
                 sink: Callable[[bytes], None] | None = None) -> None:
        self.conv = conv
        self.turn: _Turn | None = None
        self.turns: dict[int, _Turn] = {}
        self.audio = bytearray() if keep_audio else None
        self.sink = sink                  # gets every reply.audio chunk as it arrives (--save-reply)
        self.greeting_done = asyncio.get_running_loop().create_future()
        self.replies_seen = 0
        self._reply_turn: dict[str, _Turn] = {}
        conv.listeners.append(self.on_event)

    def begin(self, index: int) -> _Turn:
        loop = asyncio.get_running_loop()
        self.turn = _Turn(index, loop.create_future(), loop.create_future())
        self.turns[index] = self.turn     # the last attempt of each turn
        return self.turn

    def _owner(self, rec: Received) -> _Turn | None:
        if rec.reply_id is not None and rec.reply_id in self._reply_turn:
            return self._reply_turn[rec.reply_id]
        return self.turn

    def on_event(self, rec: Received) -> None:
        ev, now = rec.event, self.conv.clock()
        if rec.stale:
            return
        if isinstance(ev, ReplyStarted):
            if self.turn is not None and self.turn.speech_stopped_at is not None:
                self._reply_turn[ev.reply_id] = self.turn
            return
        if isinstance(ev, SessionError):
            if ev.code == RATE_VIOLATION and self.turn is not None and self.turn.rate_violation is None:
                self.turn.rate_violation = ev.message or "audio was sent faster than real time"
                if not self.turn.done.done():
                    self.turn.done.set_result(None)      # the turn is lost: stop waiting now
            return
        turn = self._owner(rec)
        if isinstance(ev, ReplyAudio):
            if self.audio is not None:
                self.audio += ev.data
            if self.sink is not None:
                self.sink(ev.data)
            if turn is not None and turn.speech_stopped_at is not None:
                turn.reply_bytes += len(ev.data)
                if rec.reply_id is not None:
                    turn.reply_audio_ms[rec.reply_id] = (turn.reply_audio_ms.get(rec.reply_id, 0.0)
                                                         + pcm_seconds(len(ev.data)) * 1000)
                if not turn.first_audio.done():
                    turn.first_audio.set_result(now)
                    self.conv.output.client_event("metrics", turn=turn.index + 1,
                                                  speech_stopped_to_first_audio_ms=turn.latency_ms)
        elif isinstance(ev, InputSpeechStopped) and self.turn is not None:
            self.turn.speech_stopped_at = now
        elif isinstance(ev, TranscriptUser) and self.turn is not None:
            self.turn.user_text = ev.text
        elif isinstance(ev, TranscriptAgentDelta) and turn is not None:
            turn.partial.setdefault(ev.reply_id, []).append((ev.start_ms, ev.delta))
        elif isinstance(ev, TranscriptAgent) and turn is not None:
            turn.partial.pop(ev.reply_id, None)
            turn.agent_text.append(ev.text)
            turn.interrupted = turn.interrupted or ev.interrupted
        elif isinstance(ev, ToolCall) and turn is not None:
            turn.tool_calls.append(ev)
        elif isinstance(ev, ReplyDone):
            self._reply_done(ev, rec, turn)

    def _reply_done(self, ev: ReplyDone, rec: Received, turn: _Turn | None) -> None:
        self.replies_seen += 1
        if not self.greeting_done.done():
            self.greeting_done.set_result(None)
        if turn is None or turn.speech_stopped_at is None:
            return
        if ev.status == "interrupted":
            turn.interrupted = True
        # the session says whether a follow-up reply to tool results is still owed (6.5)
        if not turn.done.done() and ev.status == "completed" and not rec.follow_up:
            turn.done.set_result(None)


class SilencePump:
    """Streams silence at real-time pace whenever no file is being streamed (an open mic)."""

    def __init__(self, conv: Conversation, chunk_ms: int) -> None:
        self.conv = conv
        self.chunk_ms = chunk_ms
        self.running = asyncio.Event()     # cleared = paused (a file is streaming)
        self.task: asyncio.Task[None] | None = None

    def pause(self) -> None:
        self.running.clear()

    def resume(self) -> None:
        self.running.set()

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        chunk = silence(self.chunk_ms)
        period = self.chunk_ms / 1000
        while True:
            await self.running.wait()
            next_at = self.conv.clock()
            while self.running.is_set():
                await self.conv.send_audio(chunk)
                next_at += period
                await asyncio.sleep(max(0.0, next_at - self.conv.clock()))   # real-time pacing

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


async def stream_pcm(conv: Conversation, pcm: bytes, chunk_ms: int, realtime: bool) -> None:
    """Send ``pcm`` as ``input.audio`` chunks; at real-time pace on an absolute schedule (no drift)."""
    await stream_chunks(conv, chunk_pcm(pcm, chunk_ms), realtime)


async def stream_chunks(conv: Conversation, chunks: Iterable[bytes], realtime: bool) -> None:
    """Send each PCM16 chunk as ``input.audio``; at real-time pace on an absolute schedule (no
    drift). ``chunks`` may decode lazily (an :class:`AudioSource`): only one block is in memory."""
    start = conv.clock()
    sent_s = 0.0
    for chunk in chunks:
        if not await conv.send_audio(chunk) and not conv.connected.is_set():
            return    # the connection is gone: the caller sends the turn again once it is back
        sent_s += pcm_seconds(len(chunk))
        if realtime:
            await asyncio.sleep(max(0.0, start + sent_s - conv.clock()))
        else:
            await asyncio.sleep(0)


def _turn_chunks(script: ScriptTurn, opts: AskOptions) -> Iterator[bytes]:
    """The turn's audio then its trailing silence, in ``chunk_ms`` chunks."""
    if script.source is not None:
        yield from script.source.chunks(opts.chunk_ms)
    else:
        yield from chunk_pcm(script.pcm or b"", opts.chunk_ms)
    yield from chunk_pcm(silence(opts.trailing_silence_ms), opts.chunk_ms)


async def _wait(fut: asyncio.Future[Any], conv: Conversation, timeout: float, what: str,
                generation: int | None = None) -> bool:
    """Wait for ``fut``. Returns False if the connection was re-established meanwhile (the caller
    then repeats the turn); raises the conversation's failure, or TimeoutExpired."""
    watchers: list[asyncio.Future[Any]] = [asyncio.ensure_future(conv.finished.wait())]
    if generation is not None:
        watchers.append(asyncio.ensure_future(conv.generation_after(generation)))
    try:
        await asyncio.wait([fut, *watchers], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for watcher in watchers:
            watcher.cancel()
    if fut.done():
        return True
    conv.raise_if_failed()
    if conv.finished.is_set():
        raise ServerError(f"the session ended while waiting for {what}")
    if generation is not None and conv.generation != generation:
        return False
    raise TimeoutExpired(f"no reply within {timeout:g} s for {what}",
                         "did the server hear the end of the turn? try a longer --timeout "
                         "or --trailing-silence")


async def run_script(conv: Conversation, tracker: TurnTracker, turns: Sequence[ScriptTurn],
                     opts: AskOptions) -> None:
    """Play ``turns`` on an open conversation, waiting for each reply (or, when the next turn
    barges in, for the first audio of this one plus its delay). Starts and stops the open-mic
    silence pump. Raises the conversation's failure or TimeoutExpired; the tracker keeps what was
    collected so far either way."""
    pump = SilencePump(conv, opts.chunk_ms)
    try:
        greeting = (conv.session.resolved_config or {}).get("greeting")
        if greeting and tracker.replies_seen == 0:
            await _wait(tracker.greeting_done, conv, opts.timeout_s, "the greeting")
        pump.start()
        pump.resume()
        for index, script in enumerate(turns):
            if script.silence_ms:
                await asyncio.sleep(script.silence_ms / 1000)     # the pump keeps the mic open
            barge = turns[index + 1].barge_in_after_ms if index + 1 < len(turns) else None
            what = f"turn {index + 1} ({script.name})"
            while True:
                turn = tracker.begin(index)
                generation = await _send_turn(conv, script, opts, pump, turn)
                if barge is not None:
                    await _wait_first_audio(turn, conv, opts, what, barge)
                    _check_rate(turn, what, opts)
                    break
                if await _wait(turn.done, conv, opts.timeout_s, what, generation):
                    _check_rate(turn, what, opts)
                    break
                conv.output.notice(f"the connection was re-established before the reply to {script.name}; "
                                   "sending the turn again", "warning")
        conv.raise_if_failed()
    finally:
        await pump.stop()


def _check_rate(turn: _Turn, what: str, opts: AskOptions) -> None:
    """A turn during which the server dropped audio (``audio_rate_violation``) was not heard
    whole: fail it (exit 5) rather than pass on a reply to a truncated question."""
    if turn.rate_violation is None:
        return
    if opts.pace == "fast":
        hint = ("drop --pace fast: the service and `voicecli serve` accept real time only "
                "(`voicecli serve --no-rate-check` accepts faster)")
    else:
        hint = "the client could not keep real time; is the machine overloaded?"
    raise ServerError(f"{what}: the server dropped audio sent faster than real time "
                      f"({RATE_VIOLATION}: {clean(turn.rate_violation, 200)}), so the turn was truncated",
                      hint, code=RATE_VIOLATION)


def audio_turns(files: Sequence[AudioSource | DecodedAudio | str]) -> list[tuple[str, bytes | AudioSource]]:
    """(name, audio) of each ask turn: a probed file streamed when sent (``-`` is named ``stdin``),
    a decoded one, or ``--say`` text (synthesized here, in order)."""
    out: list[tuple[str, bytes | AudioSource]] = []
    for item in files:
        if isinstance(item, str):
            out.append((f"say {clean(item, 40)!r}", speak(item)))
        else:
            name = "stdin" if item.path == "-" else Path(item.path).name
            out.append((name, item if isinstance(item, AudioSource) else item.pcm))
    return out


def _said_so_far(tracker: TurnTracker, names: list[str], output: Output) -> None:
    """Ctrl-C: show what the agent had said of the reply in progress: the words whose audio had
    arrived (plain and live outputs print it like an interrupted reply; --json gets a
    ``voicecli.interrupted`` event)."""
    turn = tracker.turn
    if turn is None:
        return
    name = names[turn.index] if turn.index < len(names) else str(turn.index + 1)
    for reply_id, deltas in list(turn.partial.items()):
        heard_ms = turn.reply_audio_ms.get(reply_id, 0.0)    # words whose audio had arrived
        text = "".join(d for start, d in deltas if start is None or start < heard_ms).strip()
        if not text:
            continue
        output.client_event("interrupted", turn=turn.index + 1, file=name, reply_id=reply_id, said=text)
        if not isinstance(output, JsonOutput):
            output.server_event(Received(TranscriptAgent(reply_id=reply_id, text=text, interrupted=True),
                                         reply_id=reply_id))
    turn.partial.clear()


async def run_ask(settings: ConnectionSettings, files: Sequence[AudioSource | DecodedAudio | str],
                  opts: AskOptions, output: Output, runner: ToolRunner | None = None) -> None:
    """Run the scripted turns: decoded files and ``--say`` texts, in order. Raises a VoicecliError
    on failure (mapped to an exit code).

    ``--save-reply``: the agent's audio is written to the WAV as it arrives (:class:`ReplySaver`),
    so Ctrl-C, SIGTERM, a timeout or a dropped server leave a valid WAV of what arrived (and even a
    kill -9 leaves one). A connection opened before ``session.ready`` still gets ``session.end``
    when the run is interrupted."""
    spoken = audio_turns(files)             # synthesis fails before connecting
    turns = [ScriptTurn(name, pcm=pcm if isinstance(pcm, bytes) else None,
                        source=pcm if isinstance(pcm, AudioSource) else None,
                        barge_in_after_ms=opts.barge_in_after_ms if i else None)
             for i, (name, pcm) in enumerate(spoken)]
    saver = ReplySaver(opts.save_reply) if opts.save_reply is not None else None
    settings.resume_budget_s = min(settings.resume_budget_s, opts.timeout_s)   # --timeout bounds every wait
    conv = Conversation(settings, output)
    player = _open_player(opts, conv, output)     # a missing device: exit 6 before connecting
    completed = False
    try:
        try:
            await conv.open()
        except BaseException:
            await conv.close()              # Ctrl-C while waiting for session.ready: session.end
            raise
        tracker = TurnTracker(conv, sink=saver.write if saver is not None else None)
        tools = ToolDispatcher(conv, runner or ToolRunner())
        try:
            await run_script(conv, tracker, turns, opts)
            if player is not None:
                await player.drain()
        except (asyncio.CancelledError, KeyboardInterrupt):
            _said_so_far(tracker, [t.name for t in turns], output)
            raise
        finally:
            await tools.cancel()
            await conv.close()
        completed = True
    finally:
        if player is not None:
            player.close()
        if saver is not None:
            saver.close(output, completed)
    if player is not None and player.failure is not None:
        output.notice(f"--play: {player.failure}; the rest of the reply was not played", "warning")
    check_expectations(opts.expect, [t.name for t in turns], tracker.turns, output)


def _open_player(opts: AskOptions, conv: Conversation, output: Output) -> Any:
    """``--play``: the speaker, opened before connecting, listening to the conversation."""
    if not opts.play:
        return None
    from voicecli.app.chat_speaker import ReplyPlayer  # numpy and the audio parts: only for --play
    player = ReplyPlayer(opts.output_device, conv.clock)
    name = player.open(asyncio.get_running_loop())
    conv.listeners.append(player.on_event)
    output.notice(f"playing the agent's audio on {name}", "debug")
    return player


class ReplySaver:
    """``--save-reply``: a :class:`WavStream` opened at the first agent audio (a run that fails
    before any arrives leaves an existing file alone); a run that completes without agent audio
    writes an empty WAV, as it always did."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stream: WavStream | None = None

    def write(self, pcm: bytes) -> None:
        if self.stream is None:
            self.stream = WavStream(self.path)
        self.stream.write(pcm)

    def close(self, output: Output, completed: bool) -> None:
        if self.stream is None:
            if not completed:
                return
            self.stream = WavStream(self.path)
        self.stream.close()
        output.notice(f"saved {self.stream.duration_s:.2f} s of agent audio to {self.path}")


def check_expectations(expect: list[str], names: list[str], turns: dict[int, _Turn],
                       output: Output) -> None:
    """``--expect``: the agent's words in turn i must match the i-th pattern (a case-insensitive
    regular expression, searched). Every turn is checked; a mismatch raises ExpectationFailed."""
    failed = 0
    for index, pattern in enumerate(expect):
        turn = turns.get(index)
        said = " ".join(turn.agent_text) if turn is not None else ""
        ok = re.search(pattern, said, re.IGNORECASE) is not None
        name = names[index]
        output.client_event("expect", turn=index + 1, file=name, pattern=pattern, ok=ok)
        if not ok:
            failed += 1
            output.notice(f"turn {index + 1} ({name}): the reply does not match {pattern!r}: "
                          f"{clean(said, 300)!r}", "error")
    if failed:
        raise ExpectationFailed(f"{failed} of {len(expect)} expectation(s) failed",
                                "see the lines above for what the agent said")


async def _send_turn(conv: Conversation, script: ScriptTurn, opts: AskOptions, pump: SilencePump,
                     turn: _Turn) -> int:
    """Send one turn: a typed one as ``conversation.message`` + ``reply.create`` (its latency is
    measured from then); a spoken one as its audio and trailing silence, after which the silence
    pump keeps the mic open. If the connection drops mid-file the turn is streamed again once it
    is back (or the conversation's failure is raised). Returns the connection generation the turn
    was sent on."""
    while True:
        await conv.wait_connected()
        generation = conv.generation
        if script.text is not None:
            turn.speech_stopped_at = conv.clock()
            turn.user_text = script.text
            await conv.send(ConversationMessage(role="user", content=script.text))
            await conv.send(ReplyCreate())
            return generation
        pump.pause()
        await stream_chunks(conv, _turn_chunks(script, opts), opts.pace != "fast")
        pump.resume()
        if conv.generation == generation and conv.connected.is_set():
            return generation
        conv.raise_if_over()
        conv.output.notice(f"the connection dropped during {script.name}; sending it again")


async def _wait_first_audio(turn: _Turn, conv: Conversation, opts: AskOptions, what: str,
                            after_ms: int) -> None:
    if not await _wait(turn.first_audio, conv, opts.timeout_s, f"the reply audio to {what}"):
        return
    await asyncio.sleep(max(0.0, turn.first_audio.result() + after_ms / 1000 - conv.clock()))
