"""Resolve what a conversing command needs from its flags (and, later, config file and environment).

``resolve(flags)`` is the one place that turns command-line flags into a session config, an
endpoint and client settings; precedence is flag > environment > config file > default
(design.md principle 12). Secrets are kept out of ``repr``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from voicecli.errors import UsageError

DEFAULT_URL = "wss://agents.assemblyai.com/v1/ws"


@dataclass
class CommonFlags:
    """Options shared by ``chat`` and ``ask`` (cli-contract.md, common options). None = not given."""

    url: str | None = None
    local: bool = False
    api_key: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    system_prompt: str | None = None
    greeting: str | None = None
    voice: str | None = None
    agent_id: str | None = None
    profile: str | None = None
    config_path: str | None = None


@dataclass
class Resolved:
    url: str
    local: bool
    session: dict[str, Any]
    api_key: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    tools: list[Any] = field(default_factory=list)          # voicecli.tools.Tool instances
    client: dict[str, Any] = field(default_factory=dict)    # devices, duplex, prebuffer_ms, record_dir


def session_config(system_prompt: str | None, greeting: str | None, voice: str | None,
                   agent_id: str | None) -> dict[str, Any]:
    """The ``session`` object of the first ``session.update``, validated before connecting."""
    from voicecli.protocol.config import validate_session

    if agent_id:
        if system_prompt or greeting or voice:
            raise UsageError("--agent-id cannot be combined with --system-prompt, --greeting or --voice",
                             "a stored agent brings its own prompt, greeting and voice")
        session: dict[str, Any] = {"agent_id": agent_id}
    else:
        session = {}
        if system_prompt is not None:
            session["system_prompt"] = system_prompt
        if greeting:
            session["greeting"] = greeting
        if voice:
            session["output"] = {"voice": voice}
    problems = validate_session(session)
    if problems:
        p = problems[0]
        raise UsageError(f"invalid session setting {p.param}: {p.message}")
    return session


def resolve(flags: CommonFlags) -> Resolved:
    """Everything a conversation needs. Raises UsageError/ConfigError (exit 2) on bad settings."""
    if flags.local and flags.url:
        raise UsageError("--local and --url are exclusive", "drop one of them")
    if not flags.local and not flags.api_key and not flags.token:
        raise UsageError("no API key: set ASSEMBLYAI_API_KEY, or pass --api-key or --token",
                         "or add --local to use the embedded local server")
    session = session_config(flags.system_prompt, flags.greeting, flags.voice, flags.agent_id)
    return Resolved(url=flags.url or DEFAULT_URL, local=flags.local, session=session,
                    api_key=flags.api_key, token=flags.token)
