"""Conversation test suites for ``voicecli eval`` (issue 11): reading and checking the TOML.

A suite is a config file (the same keys as ``config.example.toml``: system_prompt or agent_id,
voice, ``[input.turn_detection]``, ``[[tools]]``, local/local_scenario...) plus eval keys and a
``[[conversations]]`` list. Each conversation may override any config key and holds
``[[conversations.turns]]``; a turn is ``audio``, ``say`` or ``type`` plus optional expectations.
Everything is checked here, before anything connects: an unknown key, a bad regular expression or a
missing audio file is one line naming the suite, the line, the conversation and the turn (exit 2,
or 6 for audio). Settings layer as: config file < its profile < suite < conversation < env < flags.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicecli.config import PROFILE, Effective, Lines, check_table
from voicecli.errors import AudioFileError, ConfigError, VoicecliError

TURN_INPUTS = ("audio", "say", "type")
EXPECTATIONS = ("reply", "not_reply", "heard", "tool", "no_tool", "interrupted", "max_latency_ms",
                "max_reply_s")
TURN_KEYS = (*TURN_INPUTS, "silence_ms", "barge_in_after_ms", *EXPECTATIONS)
# eval keys allowed at the suite level (defaults) and per conversation (overrides)
RUN_KEYS: dict[str, tuple[type, ...]] = {"timeout_s": (int, float), "trailing_silence_ms": (int,),
                                         "chunk_ms": (int,), "say_voice": (str,)}
CONVERSATION_KEYS = ("name", "turns", "expect_fail", *RUN_KEYS)
SUITE_KEYS = ("name", "conversations", *RUN_KEYS)


@dataclass(frozen=True)
class ToolExpectation:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)            # subset match (equality)
    arguments_match: dict[str, re.Pattern[str]] = field(default_factory=dict)   # per-argument regex


@dataclass(frozen=True)
class Turn:
    index: int                      # 0-based
    label: str                      # what it says or plays, for reports
    audio: Path | None = None
    say: str | None = None
    type: str | None = None
    silence_ms: int = 0
    barge_in_after_ms: int | None = None
    expect: dict[str, Any] = field(default_factory=dict)   # kind -> compiled/checked value


@dataclass(frozen=True)
class Conversation:
    name: str
    index: int
    turns: tuple[Turn, ...]
    overrides: dict[str, tuple[Any, Any]]       # config key -> (value, Source)
    run: dict[str, Any]                         # timeout_s, trailing_silence_ms, chunk_ms, say_voice
    expect_fail: bool = False


@dataclass(frozen=True)
class Suite:
    path: Path
    name: str
    text: str
    settings: dict[str, tuple[Any, Any]]        # the suite's config layer: key -> (value, Source)
    conversations: tuple[Conversation, ...]


class _Where:
    """Error messages naming the suite file, the line and the key."""

    def __init__(self, path: Path, text: str) -> None:
        self.path, self.lines = path, Lines(text)

    def error(self, key: str, problem: str, hint: str | None = None) -> ConfigError:
        line = self.lines.find(key)
        at = f", line {line}" if line else ""
        return ConfigError(f"suite {self.path}{at}, {key}: {problem}",
                           hint or "README.md (Evals) documents the suite format")


def _did_you_mean(key: str, known: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _read(path: Path) -> tuple[dict[str, Any], str]:
    if not path.is_file():
        what = "does not exist" if not path.exists() else "is not a file"
        raise ConfigError(f"suite {path} {what}", "check the path")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read suite {path}: {exc}") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"suite {path}: not valid TOML: {exc}",
                          "README.md (Evals) documents the suite format") from None


def _split(table: dict[str, Any], eval_keys: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(eval keys, config keys) of a suite or conversation table."""
    ours = {k: v for k, v in table.items() if k in eval_keys}
    return ours, {k: v for k, v in table.items() if k not in eval_keys}


def _config_layer(path: Path, text: str, data: dict[str, Any], prefix: str) -> dict[str, tuple[Any, Any]]:
    """Check ``data`` with the config file's own checker (same keys, same messages)."""
    if "profiles" in data:
        raise _Where(path, text).error(prefix + "profiles", "a suite has no profiles; pick one with "
                                       "--profile from your config file, or set the keys here")
    values = check_table(path, text, data, prefix)
    scenario = values.get("local_scenario")
    if scenario is not None and scenario[0].endswith((".toml", ".json")):
        # a scenario file is relative to the suite (the in-process server's cwd is the user's)
        values["local_scenario"] = (str((path.parent / scenario[0]).resolve()), scenario[1])
    return values


def _run_keys(where: _Where, prefix: str, table: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, kinds in RUN_KEYS.items():
        if key in table:
            value = table[key]
            if isinstance(value, bool) or not isinstance(value, kinds):
                raise where.error(prefix + key, f"must be {'text' if kinds == (str,) else 'a number'}")
            out[key] = value
    return out


def _regex(where: _Where, key: str, value: Any) -> re.Pattern[str]:
    if not isinstance(value, str):
        raise where.error(key, "must be a regular expression (a string)")
    try:
        return re.compile(value, re.IGNORECASE)
    except re.error as exc:
        raise where.error(key, f"{value!r} is not a valid regular expression: {exc}") from None


def _tool(where: _Where, key: str, value: Any) -> list[ToolExpectation]:
    items = value if isinstance(value, list) else [value]
    out = []
    for i, item in enumerate(items):
        k = f"{key}[{i}]" if isinstance(value, list) else key
        if isinstance(item, str):
            out.append(ToolExpectation(item))
            continue
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise where.error(k, "must be a tool name, or a table with name "
                              "(and arguments / arguments_match)")
        unknown = set(item) - {"name", "arguments", "arguments_match"}
        if unknown:
            bad = sorted(unknown)[0]
            raise where.error(f"{k}.{bad}", "unknown key" + _did_you_mean(bad, ["name", "arguments",
                                                                                 "arguments_match"]))
        args, match = item.get("arguments", {}), item.get("arguments_match", {})
        if not isinstance(args, dict) or not isinstance(match, dict):
            raise where.error(k, "arguments and arguments_match must be tables")
        patterns = {a: _regex(where, f"{k}.arguments_match.{a}", p) for a, p in match.items()}
        out.append(ToolExpectation(item["name"], dict(args), patterns))
    return out


def _number(where: _Where, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise where.error(key, "must be a number of at least 0")
    return float(value)


def _expectations(where: _Where, prefix: str, raw: dict[str, Any]) -> dict[str, Any]:
    expect: dict[str, Any] = {}
    for kind in EXPECTATIONS:
        if kind not in raw:
            continue
        value, key = raw[kind], prefix + kind
        if kind in ("reply", "not_reply", "heard"):
            expect[kind] = _regex(where, key, value)
        elif kind == "tool":
            expect[kind] = _tool(where, key, value)
        elif kind == "no_tool":
            if isinstance(value, bool):
                expect[kind] = value
            elif isinstance(value, str) or (isinstance(value, list)
                                            and all(isinstance(v, str) for v in value)):
                expect[kind] = [value] if isinstance(value, str) else list(value)
            else:
                raise where.error(key, "must be true (no tool call at all) or tool name(s)")
        elif kind == "interrupted":
            if not isinstance(value, bool):
                raise where.error(key, "must be true or false")
            expect[kind] = value
        else:
            expect[kind] = _number(where, key, value)
    return expect


def _turn(where: _Where, suite_dir: Path, prefix: str, index: int, raw: Any) -> Turn:
    if not isinstance(raw, dict):
        raise where.error(prefix.rstrip("."), "must be a table ([[conversations.turns]])")
    for key in raw:
        if key not in TURN_KEYS:
            raise where.error(prefix + key, "unknown turn key" + _did_you_mean(key, TURN_KEYS))
    given = [k for k in TURN_INPUTS if k in raw]
    if len(given) != 1:
        raise where.error(prefix.rstrip("."), "a turn needs exactly one of audio, say or type"
                          + (f" (it has {', '.join(given)})" if given else ""))
    kind = given[0]
    value = raw[kind]
    if not isinstance(value, str) or not value.strip():
        raise where.error(prefix + kind, "must be non-empty text")
    ints: dict[str, int | None] = {}
    for key in ("silence_ms", "barge_in_after_ms"):
        v = raw.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise where.error(prefix + key, "must be a whole number of milliseconds (0 or more)")
        ints[key] = v
    if ints["barge_in_after_ms"] is not None and index == 0:
        raise where.error(prefix + "barge_in_after_ms", "the first turn has no previous reply to barge into")
    audio = (suite_dir / value).expanduser() if kind == "audio" else None
    label = Path(value).name if kind == "audio" else value
    return Turn(index, label, audio=audio, say=value if kind == "say" else None,
                type=value if kind == "type" else None, silence_ms=ints["silence_ms"] or 0,
                barge_in_after_ms=ints["barge_in_after_ms"],
                expect=_expectations(where, prefix, raw))


def load_suite(path: Path) -> Suite:
    """Read and check one suite. Raises ConfigError (exit 2) naming the file, line and key."""
    data, text = _read(path)
    where = _Where(path, text)
    ours, config = _split(data, SUITE_KEYS)
    settings = _config_layer(path, text, config, "")
    defaults = _run_keys(where, "", ours)
    raw_convs = ours.get("conversations")
    if not isinstance(raw_convs, list) or not raw_convs:
        raise where.error("conversations", "a suite needs at least one [[conversations]] table")
    convs: list[Conversation] = []
    names: set[str] = set()
    for ci, raw in enumerate(raw_convs):
        prefix = f"conversations[{ci}]."
        if not isinstance(raw, dict):
            raise where.error(prefix.rstrip("."), "must be a table")
        c_ours, c_config = _split(raw, CONVERSATION_KEYS)
        name = c_ours.get("name", f"conversation {ci + 1}")
        if not isinstance(name, str) or not name.strip():
            raise where.error(prefix + "name", "must be non-empty text")
        if name in names:
            raise where.error(prefix + "name", f"a second conversation named {name!r}")
        names.add(name)
        try:
            overrides = _config_layer(path, text, c_config, prefix)
        except ConfigError as exc:   # an unknown key here may be a misspelt eval key
            key = next((k for k in c_config if k not in _config_known()), None)
            if key is not None:
                raise where.error(prefix + key, "unknown key" + _did_you_mean(
                    key, [*CONVERSATION_KEYS, *_config_known()])) from None
            raise exc from None
        raw_turns = c_ours.get("turns")
        if not isinstance(raw_turns, list) or not raw_turns:
            raise where.error(prefix + "turns", f"conversation {name!r} needs at least one "
                              "[[conversations.turns]] table")
        turns = tuple(_turn(where, path.parent, f"{prefix}turns[{ti}].", ti, t)
                      for ti, t in enumerate(raw_turns))
        expect_fail = c_ours.get("expect_fail", False)
        if not isinstance(expect_fail, bool):
            raise where.error(prefix + "expect_fail", "must be true or false")
        run = {**defaults, **_run_keys(where, prefix, c_ours)}
        convs.append(Conversation(name, ci, turns, overrides, run, expect_fail))
    suite_name = ours.get("name", path.stem)
    return Suite(path, str(suite_name), text, settings, tuple(convs))


def _config_known() -> list[str]:
    from voicecli.config import SCALARS, TABLES
    return [*SCALARS, *sorted(TABLES), "tools"]


def effective_for(base: Effective, suite: Suite, conv: Conversation) -> Effective:
    """The config of one conversation: ``base`` (config file, profile, env, flags) with the suite's
    and the conversation's keys laid over the file layers (env and flags still win)."""
    values = dict(base.values)
    for layer in (suite.settings, conv.overrides):
        for key, (value, src) in layer.items():
            current = values.get(key)
            if current is not None and current[1].rank > PROFILE:
                continue
            values[key] = (value, src)
            # exclusive pairs: the suite's choice removes the file's other one
            other = {"local": "url", "url": "local"}.get(key)
            if other and other in values and values[other][1].rank <= PROFILE:
                del values[other]
    eff = Effective(path=suite.path, exists=True, profile=base.profile, values=values,
                    ignored=dict(base.ignored), text=suite.text)
    return eff


def load_audio(suite: Suite) -> dict[Path, bytes]:
    """Decode every ``audio`` turn (before connecting). Raises AudioFileError naming the turn."""
    from voicecli.audio.files import load_audio_file
    out: dict[Path, bytes] = {}
    for conv in suite.conversations:
        for turn in conv.turns:
            if turn.audio is None or turn.audio in out:
                continue
            try:
                out[turn.audio] = load_audio_file(turn.audio).pcm
            except VoicecliError as exc:
                raise AudioFileError(f"suite {suite.path}, conversation {conv.name!r} turn {turn.index + 1}: "
                                     f"{exc.message}", exc.hint) from None
    return out


def synthesize(suite: Suite, cache: dict[tuple[str, str | None], bytes]) -> None:
    """Synthesize every ``say`` turn locally (:func:`voicecli.app.ask.speak`, the one synthesis
    ``ask --say`` uses too), once per text and voice."""
    from voicecli.app.ask import speak
    from voicecli.errors import AudioError
    for conv in suite.conversations:
        voice = conv.run.get("say_voice")
        for turn in conv.turns:
            if turn.say is None or (turn.say, voice) in cache:
                continue
            try:
                cache[(turn.say, voice)] = speak(turn.say, voice)
            except AudioError as exc:
                raise AudioError(f"suite {suite.path}, conversation {conv.name!r} turn {turn.index + 1}: "
                                 f"say: {exc.message}", exc.hint) from None
