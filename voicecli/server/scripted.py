"""The scripted engine: a **test double** for the local server's speech-to-text and brain.

What the user "said" and what the agent answers come from a scenario instead of from models, so
client tests can assert exact transcripts, tool calls and follow-ups while still driving turns
with real audio (turn boundaries come from the turn detector; only the *words* are scripted).

Scenario format (TOML or JSON; a bare name resolves to ``voicecli/server/scenarios/NAME.toml``)::

    name = "tools"                                  # optional
    reply_create = "One moment please."             # optional: text for reply.create
    [[turns]]
    user = "what is the weather in paris"           # the user's transcript for turn N
    agent = "Let me check."                         # spoken (transition phrase with tools)
    tool_calls = [{ name = "get_weather", arguments = { city = "Paris" }, call_id = "..." }]
    after_tools = "The weather in Paris is {result}."   # {result}: first result, {results}: all
    on_timeout = "Sorry, {name} did not answer."        # optional, when a tool times out

Turn N of the conversation gets scenario turn N; past the end the agent says "That is the end of
the script." A scripted tool call is made only if the session declared that tool (``tools`` in its
``session.update``); otherwise the agent says which tool the scenario would have called and that
the session did not declare it, instead of the turn's ``agent`` line (a top-level
``undeclared_tools = true`` makes a scenario call them anyway: a quirky server for client tests).
A ``reply.create`` speaks ``reply_create`` if set, else its ``instructions`` verbatim
(deterministic for tests), else "How can I help?". A tool result that is a JSON string literal
(``"\"sunny\""``) is quoted as the plain string; any other result text is quoted as is.
A top-level ``greeting`` key is informational only: the greeting stays client-configured.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .engines import BYTES_PER_MS, ReplyPlan, ToolCallPlan, ToolOutcome, TurnContext

END_OF_SCRIPT = "That is the end of the script."
DEFAULT_TIMEOUT_TEXT = "Sorry, the {name} tool did not answer in time."
MS_PER_PARTIAL_WORD = 250


class ScenarioError(ValueError):
    """A scenario that cannot be found or read; the message names it."""


@dataclass(frozen=True, slots=True)
class ScenarioTurn:
    user: str
    agent: str = ""
    tool_calls: tuple[ToolCallPlan, ...] = ()
    after_tools: str | None = None
    on_timeout: str | None = None


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    turns: tuple[ScenarioTurn, ...]
    reply_create: str | None = None
    greeting: str | None = None
    undeclared_tools: bool = False    # call tools the session did not declare (a quirky server)


def _tool_call(raw: Any, where: str) -> ToolCallPlan:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise ScenarioError(f"{where}: each tool call needs a 'name'")
    args = raw.get("arguments", {})
    if not isinstance(args, dict):
        raise ScenarioError(f"{where}: 'arguments' must be a table/object")
    call_id = raw.get("call_id")
    return ToolCallPlan(raw["name"], dict(args), call_id if isinstance(call_id, str) else None)


def scenario_from_dict(data: dict[str, Any], name: str) -> Scenario:
    """Build a :class:`Scenario` from parsed TOML/JSON; raises ScenarioError on bad shapes."""
    turns_raw = data.get("turns", [])
    if not isinstance(turns_raw, list):
        raise ScenarioError(f"scenario {name!r}: 'turns' must be a list")
    turns = []
    for i, raw in enumerate(turns_raw):
        where = f"scenario {name!r} turn {i + 1}"
        if not isinstance(raw, dict) or not isinstance(raw.get("user", ""), str):
            raise ScenarioError(f"{where}: a turn needs a 'user' string")
        calls = tuple(_tool_call(c, where) for c in raw.get("tool_calls", []) or [])
        turns.append(ScenarioTurn(raw.get("user", ""), str(raw.get("agent", "")), calls,
                                  raw.get("after_tools"), raw.get("on_timeout")))
    return Scenario(str(data.get("name", name)), tuple(turns), data.get("reply_create"),
                    data.get("greeting"), data.get("undeclared_tools") is True)


def load_scenario(name_or_path: str) -> Scenario:
    """A shipped scenario by name (``echo``, ``tools``, ...) or a ``.toml``/``.json`` file path.

    Raises ScenarioError saying what was looked for."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        text, label, is_json = path.read_text(encoding="utf-8"), str(path), path.suffix == ".json"
    else:
        shipped = resources.files("voicecli.server").joinpath("scenarios", f"{name_or_path}.toml")
        if "/" in name_or_path or "\\" in name_or_path or not shipped.is_file():
            names = sorted(p.name[:-5] for p in resources.files("voicecli.server").joinpath(
                "scenarios").iterdir() if p.name.endswith(".toml"))
            raise ScenarioError(f"no scenario {name_or_path!r}: not a file and not one of "
                                f"{', '.join(names)}")
        text, label, is_json = shipped.read_text(encoding="utf-8"), name_or_path, False
    try:
        data = json.loads(text) if is_json else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"scenario {label!r} is not valid {'JSON' if is_json else 'TOML'}: {exc}") \
            from exc
    if not isinstance(data, dict):
        raise ScenarioError(f"scenario {label!r} must be a table/object")
    return scenario_from_dict(data, Path(label).stem)


def _spoken_result(result: str) -> str:
    try:
        value = json.loads(result)
    except ValueError:
        return result
    return value if isinstance(value, str) else result


class ScriptedEngine:
    """SpeechToText + Brain from a :class:`Scenario` (one instance per session: it keeps state).

    ``partial`` reveals the scripted user line one word per 250 ms of speech (never the last
    word, so a partial is a strict prefix unless the line has one word); ``final`` returns the
    whole line and moves to the next turn; ``reply`` answers turn ``ctx.turn_index``."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self._stt_turn = 0
        self._tool_turn: ScenarioTurn | None = None

    def _user_line(self) -> str:
        if self._stt_turn < len(self.scenario.turns):
            return self.scenario.turns[self._stt_turn].user
        return f"(unscripted turn {self._stt_turn + 1})"

    # SpeechToText -------------------------------------------------------------------------
    def partial(self, pcm: bytes) -> str:
        words = self._user_line().split()
        shown = min(int(len(pcm) / BYTES_PER_MS // MS_PER_PARTIAL_WORD), len(words) - 1)
        return " ".join(words[:max(1, shown)])

    def final(self, pcm: bytes) -> str:
        line = self._user_line()
        self._stt_turn += 1
        return line

    # Brain --------------------------------------------------------------------------------
    def reply(self, ctx: TurnContext) -> ReplyPlan:
        if ctx.instructions is not None or not ctx.user_text:
            text = self.scenario.reply_create or ctx.instructions or "How can I help?"
            return ReplyPlan(text)
        if ctx.turn_index >= len(self.scenario.turns):
            return ReplyPlan(END_OF_SCRIPT)
        turn = self.scenario.turns[ctx.turn_index]
        declared = {t.get("name") for t in ctx.tools if isinstance(t, dict)}
        allowed = self.scenario.undeclared_tools
        calls = tuple(c for c in turn.tool_calls if allowed or c.name in declared)
        missing = sorted({c.name for c in turn.tool_calls if c.name not in declared and not allowed})
        if calls:
            self._tool_turn = turn
        if not missing:
            return ReplyPlan(turn.agent, calls)
        # never call a tool the session did not declare (issue 9): say so in the transcript
        names = " and ".join(missing)
        note = (f"The {self.scenario.name} scenario calls {names} here, but this session did not "
                f"declare {'that tool' if len(missing) == 1 else 'those tools'}.")
        if calls:
            return ReplyPlan(f"{turn.agent} {note}".strip(), calls)
        return ReplyPlan(note)

    def after_tools(self, ctx: TurnContext, outcomes: list[ToolOutcome]) -> ReplyPlan:
        turn = self._tool_turn
        timed_out = [o for o in outcomes if o.timed_out]
        if timed_out:
            template = (turn.on_timeout if turn and turn.on_timeout else DEFAULT_TIMEOUT_TEXT)
            return ReplyPlan(template.replace("{name}", timed_out[0].name))
        spoken = [_spoken_result(o.result) for o in outcomes]
        template = turn.after_tools if turn and turn.after_tools else "Done: {results}."
        text = template.replace("{result}", spoken[0] if spoken else "")
        return ReplyPlan(text.replace("{results}", ", ".join(spoken)))
