"""Stored agents of the local server (protocol.md 6.9): validation and a store shared by processes.

An agent is what the Agents REST API holds: ``name``, ``system_prompt`` and ``voice:
{"voice_id"}`` (required), and optionally ``greeting``, ``tools``, ``input``, ``output``, ``llm``
(one ``{base_url, model, api_key}`` entry; ``[]`` = the server's own brain) and
``pre_connect_requests``. :func:`session_of` turns one into the ``session`` object of a
``session.update``, and :func:`validate_agent` checks it with the very validator a
``session.update`` goes through (:func:`voicecli.protocol.config.validate_session`), reporting
problems FastAPI/pydantic style (``{"type", "loc", "msg", "input"}`` items of a 422 ``detail``).

:class:`AgentStore` keeps agents in one SQLite file (stdlib ``sqlite3``, WAL journal): any number
of ``voicecli serve`` processes and CLI runs may read and write it at once; every write is one
transaction, readers never block writers, and a lookup reads the file each time (an agent another
process created is found). The file is created at the first write; reading a missing store is an
empty store. The default path is ``agents.sqlite3`` in the user data dir (platformdirs), or
``$VOICECLI_AGENTS_STORE``.

This module does blocking file I/O but imports no event loop: the server calls it from its worker
threads (REST) or for one keyed row read (``session.update {agent_id}``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import tomllib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from voicecli.protocol.config import KNOWN_VOICES, validate_session

STORE_ENV = "VOICECLI_AGENTS_STORE"
REQUIRED = ("name", "system_prompt", "voice")
# the fields of 6.9; other keys (telephony settings, ...) are kept and echoed, but not applied
SESSION_FIELDS = ("system_prompt", "greeting", "input", "output", "tools", "llm", "pre_connect_requests")
READ_ONLY = ("id", "created_at", "updated_at")


def default_store_path() -> Path:
    """``$VOICECLI_AGENTS_STORE``, else ``<user data dir>/voicecli/agents.sqlite3``."""
    given = os.environ.get(STORE_ENV)
    if given:
        return Path(given).expanduser()
    from platformdirs import user_data_path
    return user_data_path("voicecli", appauthor=False) / "agents.sqlite3"


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def _item(kind: str, loc: list[str | int], msg: str, value: Any, **ctx: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"type": kind, "loc": ["body", *loc], "msg": msg, "input": value}
    if ctx:
        item["ctx"] = ctx
    return item


def _loc(param: str | None) -> list[str | int]:
    """``tools[0].name`` -> ``["tools", 0, "name"]``; ``output.voice`` -> ``["voice", "voice_id"]``
    (the REST field it came from)."""
    if param is None:
        return []
    if param == "output.voice":
        return ["voice", "voice_id"]
    loc: list[str | int] = []
    for part in param.split("."):
        name, _, index = part.partition("[")
        loc.append(name)
        if index:
            loc.append(int(index.rstrip("]")))
    return loc


def session_of(agent: dict[str, Any]) -> dict[str, Any]:
    """The ``session.update`` payload a stored agent stands for (its voice goes to ``output.voice``)."""
    session: dict[str, Any] = {}
    for key in SESSION_FIELDS:
        if key in agent and agent[key] is not None:
            session[key] = json.loads(json.dumps(agent[key]))
    voice = agent.get("voice")
    if isinstance(voice, dict) and "voice_id" in voice:
        output = session.get("output")
        session["output"] = {**(output if isinstance(output, dict) else {}), "voice": voice["voice_id"]}
    return session


def validate_agent(body: Any, voices: tuple[str, ...] = KNOWN_VOICES) -> list[dict[str, Any]]:
    """Every problem with an agent body, as pydantic-style items (empty: valid)."""
    if not isinstance(body, dict):
        return [_item("model_attributes_type", [], "Input should be a valid dictionary or object to "
                      "extract fields from", body)]
    errors: list[dict[str, Any]] = []
    for key in REQUIRED:
        if key not in body or body[key] is None:
            errors.append(_item("missing", [key], "Field required", body))
    for key in ("name", "system_prompt", "greeting"):
        value = body.get(key)
        if value is not None and not isinstance(value, str):
            errors.append(_item("string_type", [key], "Input should be a valid string", value))
    if isinstance(body.get("name"), str) and not body["name"].strip():
        errors.append(_item("string_too_short", ["name"], "String should have at least 1 character",
                            body["name"], min_length=1))
    voice = body.get("voice")
    if voice is not None:
        if not isinstance(voice, dict):
            errors.append(_item("model_attributes_type", ["voice"], "Input should be an object "
                                "like {\"voice_id\": \"alba\"}", voice))
        elif not isinstance(voice.get("voice_id"), str):
            errors.append(_item("missing" if "voice_id" not in voice else "string_type",
                                ["voice", "voice_id"], "Field required" if "voice_id" not in voice
                                else "Input should be a valid string", voice.get("voice_id")))
    llm = body.get("llm")
    if llm is not None:
        if not isinstance(llm, list):
            errors.append(_item("list_type", ["llm"], "Input should be a valid list", llm))
        elif len(llm) > 1:
            errors.append(_item("too_long", ["llm"], "List should have at most 1 item", llm, max_length=1))
        else:
            for i, entry in enumerate(llm):
                if not isinstance(entry, dict):
                    errors.append(_item("model_attributes_type", ["llm", i], "Input should be an object",
                                        entry))
                    continue
                for key in ("base_url", "model"):
                    if not isinstance(entry.get(key), str) or not entry[key]:
                        errors.append(_item("missing", ["llm", i, key], "Field required", entry.get(key)))
    pre = body.get("pre_connect_requests")
    if pre is not None and not isinstance(pre, list):
        errors.append(_item("list_type", ["pre_connect_requests"], "Input should be a valid list", pre))
    if errors:
        return errors
    # the rest: exactly the rules of a session.update (one validator, protocol/config.py)
    for problem in validate_session(session_of(body), first=True, voices=voices):
        loc = _loc(problem.param)
        given: Any = body
        for part in loc:
            given = given.get(part) if isinstance(given, dict) and isinstance(part, str) else (
                given[part] if isinstance(given, list) and isinstance(part, int) and part < len(given)
                else None)
        msg = problem.message
        if loc == ["voice", "voice_id"]:
            msg = f"unknown voice {given!r} (known voices: {', '.join(voices[:16])}, ...)"
        errors.append(_item("value_error", loc, msg, given))
    return errors


def public(record: dict[str, Any]) -> dict[str, Any]:
    """An agent as the API answers it: ``llm`` keys are write-only (never echoed, 5.10)."""
    out = dict(record)
    if isinstance(out.get("llm"), list):
        out["llm"] = [{k: v for k, v in e.items() if k != "api_key"} if isinstance(e, dict) else e
                      for e in out["llm"]]
    return out


def summary(record: dict[str, Any]) -> dict[str, Any]:
    """What ``GET /v1/agents`` lists per agent: id, name, timestamps."""
    return {k: record.get(k) for k in ("id", "name", "created_at", "updated_at")}


# --------------------------------------------------------------------------------------------
# the store
# --------------------------------------------------------------------------------------------


def _now_iso() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


class StoreError(Exception):
    """The store file cannot be opened, read or written; ``str(exc)`` says which and why."""


class AgentStore:
    """Agents in one SQLite file (see the module docstring). Thread- and process-safe: each call
    opens its own connection; writes are ``BEGIN IMMEDIATE`` transactions (one writer at a time,
    others wait up to ``timeout`` seconds)."""

    def __init__(self, path: str | Path, timeout: float = 30.0) -> None:
        self.path = Path(path).expanduser()
        self.timeout = timeout

    @contextmanager
    def _db(self, write: bool) -> Iterator[sqlite3.Connection | None]:
        """A connection (None: reading a store that does not exist yet). Writes run in one
        ``BEGIN IMMEDIATE`` transaction, committed when the block ends, rolled back on an error."""
        if not write and not self.path.exists():
            yield None
            return
        try:
            existed = self.path.exists()
            if write and not existed:
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
            if write and not existed:
                # agents may hold an llm api_key: the file (and the -wal/-shm files, which SQLite
                # creates with the database's mode) is the user's only. chmod, not a second open():
                # closing any other descriptor of the file would drop this process's SQLite locks.
                os.chmod(self.path, 0o600)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the agents store {self.path}: {exc}") from None
        try:
            try:
                if write:
                    db.execute("PRAGMA journal_mode=WAL")   # readers never wait for a writer
                db.execute("CREATE TABLE IF NOT EXISTS agents (id TEXT PRIMARY KEY, name TEXT NOT NULL, "
                           "body TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)")
                if write:
                    db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"the agents store {self.path} cannot be used: {exc}") from None
            try:
                yield db
            except BaseException as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"the agents store {self.path} failed: {exc}") from None
                raise
            try:
                if db.in_transaction:
                    db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"the agents store {self.path} failed to save: {exc}") from None
        finally:
            db.close()

    @staticmethod
    def _record(row: tuple[str, str, str, str, str]) -> dict[str, Any]:
        agent_id, name, body, created, updated = row
        record: dict[str, Any] = {"id": agent_id, "name": name, **json.loads(body)}
        record["created_at"], record["updated_at"] = created, updated
        return record

    @staticmethod
    def _body(agent: dict[str, Any]) -> str:
        return json.dumps({k: v for k, v in agent.items() if k not in (*READ_ONLY, "name")},
                          ensure_ascii=False)

    def all(self) -> list[dict[str, Any]]:
        """Every agent (full records), oldest first."""
        with self._db(write=False) as db:
            if db is None:
                return []
            rows = db.execute("SELECT id, name, body, created_at, updated_at FROM agents "
                              "ORDER BY created_at, id").fetchall()
        return [self._record(r) for r in rows]

    def get(self, agent_id: str) -> dict[str, Any] | None:
        with self._db(write=False) as db:
            if db is None:
                return None
            row = db.execute("SELECT id, name, body, created_at, updated_at FROM agents WHERE id = ?",
                             (agent_id,)).fetchone()
        return None if row is None else self._record(row)

    def create(self, agent: dict[str, Any], agent_id: str | None = None) -> dict[str, Any]:
        """Store a (validated) agent under a new UUID (or ``agent_id``, replacing one there)."""
        agent_id = agent_id or str(uuid.uuid4())
        now = _now_iso()
        with self._db(write=True) as db:
            assert db is not None
            old = db.execute("SELECT created_at FROM agents WHERE id = ?", (agent_id,)).fetchone()
            row = (agent_id, agent["name"], self._body(agent), old[0] if old else now, now)
            db.execute("INSERT OR REPLACE INTO agents VALUES (?, ?, ?, ?, ?)", row)
        return self._record(row)

    def update(self, agent_id: str, fields: dict[str, Any],
               check: Any = None) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """Replace the given top-level fields of an agent, in one transaction (a concurrent
        update of other fields is not lost). ``check(merged) -> errors`` validates the result;
        returns (record, []) or (None, errors); (None, []) when there is no such agent."""
        with self._db(write=True) as db:
            assert db is not None
            row = db.execute("SELECT id, name, body, created_at, updated_at FROM agents WHERE id = ?",
                             (agent_id,)).fetchone()
            if row is None:
                return None, []
            current = self._record(row)
            merged = {k: v for k, v in current.items() if k not in READ_ONLY}
            merged.update({k: v for k, v in fields.items() if k not in READ_ONLY})
            if "llm" in fields:
                merged["llm"] = _keep_llm_keys(current.get("llm"), fields["llm"])
            errors = check(merged) if check is not None else []
            if errors:
                return None, errors
            row = (agent_id, merged["name"], self._body(merged), current["created_at"], _now_iso())
            db.execute("UPDATE agents SET name = ?, body = ?, updated_at = ? WHERE id = ?",
                       (row[1], row[2], row[4], agent_id))
        return self._record(row), []

    def delete(self, agent_id: str) -> bool:
        """True when an agent was deleted."""
        with self._db(write=True) as db:
            assert db is not None
            return db.execute("DELETE FROM agents WHERE id = ?", (agent_id,)).rowcount > 0


def _keep_llm_keys(old: Any, new: Any) -> Any:
    """An ``llm`` api_key is write-only (never shown), so an update that leaves it out of an entry
    for the same ``base_url`` keeps the stored key (``agents show`` -> edit -> ``agents update``
    does not drop it)."""
    if not isinstance(old, list) or not isinstance(new, list):
        return new
    out = []
    for i, entry in enumerate(new):
        before = old[i] if i < len(old) else None
        if isinstance(entry, dict) and "api_key" not in entry and isinstance(before, dict) \
                and "api_key" in before and before.get("base_url") == entry.get("base_url"):
            entry = {**entry, "api_key": before["api_key"]}
        out.append(entry)
    return out


# --------------------------------------------------------------------------------------------
# agent files (TOML in the config file's shape, or JSON in the REST shape)
# --------------------------------------------------------------------------------------------


class AgentFileError(ValueError):
    """An agent file that cannot be read; ``str(exc)`` names the file and the problem."""


AGENT_ONLY_KEYS = ("id", "name", "voice", "llm", "pre_connect_requests")


def from_config_shape(data: dict[str, Any], where: str = "the agent file") -> dict[str, Any]:
    """An agent (REST shape) from a table in the config file's shape: ``name``, ``system_prompt``,
    ``greeting``, ``[output] voice = "alba"`` (or ``voice = "alba"`` / ``voice = {voice_id}``),
    ``[input]``, ``[[tools]]`` (their local ``command``/``callable``/``cwd`` are dropped: they say
    how the client runs a tool, not what the agent declares), ``[[llm]]``. Keys of the REST shape
    pass through. Raises AgentFileError for keys that are not agent settings."""
    from voicecli.config import CLIENT_KEYS, CONNECTION_KEYS

    agent: dict[str, Any] = {}
    for key, value in data.items():
        if key in CONNECTION_KEYS or key in CLIENT_KEYS or key in ("token", "profiles"):
            raise AgentFileError(f"{where}: {key!r} is a client setting, not part of an agent "
                                 "(agents hold name, system_prompt, greeting, voice, input, output, "
                                 "tools, llm)")
        agent[key] = value
    output = agent.get("output")
    voice = agent.get("voice")
    if isinstance(voice, str):
        agent["voice"] = {"voice_id": voice}
    elif voice is None and isinstance(output, dict) and "voice" in output:
        output = dict(output)
        agent["voice"] = {"voice_id": output.pop("voice")}
        agent["output"] = output
    if not agent.get("output"):
        agent.pop("output", None)
    tools = agent.get("tools")
    if isinstance(tools, list):
        agent["tools"] = [_declared_tool(t) for t in tools]
    return agent


def _declared_tool(tool: Any) -> Any:
    if not isinstance(tool, dict):
        return tool
    out = {k: v for k, v in tool.items() if k not in ("command", "callable", "cwd")}
    out.setdefault("type", "function")
    out.setdefault("description", "")
    out.setdefault("parameters", {"type": "object", "properties": {}, "required": []})
    return out


def to_config_shape(record: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`from_config_shape` for display (``voicecli agents show``):
    ``voice_id`` back into ``[output] voice``; read-only fields kept on top."""
    out: dict[str, Any] = {}
    for key in ("id", "name", "system_prompt", "greeting"):
        if record.get(key) is not None:
            out[key] = record[key]
    rest = {k: v for k, v in record.items() if k not in out and k not in ("voice", *READ_ONLY)
            and v is not None}
    voice = record.get("voice")
    if isinstance(voice, dict) and "voice_id" in voice:
        rest["output"] = {"voice": voice["voice_id"], **(rest.get("output") or {})}
    out.update(rest)
    for key in ("created_at", "updated_at"):
        if record.get(key) is not None:
            out[key] = record[key]
    return out


def read_agent_file(path: Path) -> Any:
    """The parsed content of a TOML or JSON file (JSON when it ends in .json or starts with ``{``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AgentFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise AgentFileError(f"{path} is not UTF-8 text") from None
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise AgentFileError(f"{path} is not valid JSON: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AgentFileError(f"{path} is not valid TOML: {exc}") from None


def load_agents_file(path: Path, voices: tuple[str, ...] = KNOWN_VOICES
                     ) -> list[tuple[str, dict[str, Any]]]:
    """``serve --agents FILE``: ``[[agents]]`` tables (config shape, each with an ``id``) ->
    [(id, agent)], each validated. Raises AgentFileError naming the agent and field."""
    data = read_agent_file(path)
    items = data.get("agents") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise AgentFileError(f"{path}: expected [[agents]] tables, each with id, name, system_prompt "
                             "and a voice")
    out: list[tuple[str, dict[str, Any]]] = []
    seen: set[str] = set()
    for i, table in enumerate(items):
        where = f"{path}, agents[{i}]"
        if not isinstance(table, dict):
            raise AgentFileError(f"{where}: must be a table")
        agent_id = table.get("id")
        if not isinstance(agent_id, str) or not agent_id.strip():
            raise AgentFileError(f"{where}: needs an id = \"...\" (the agent_id sessions bind)")
        if agent_id in seen:
            raise AgentFileError(f"{where}: a second agent with id {agent_id!r}")
        seen.add(agent_id)
        agent = from_config_shape({k: v for k, v in table.items() if k != "id"}, where)
        errors = validate_agent(agent, voices)
        if errors:
            raise AgentFileError(f"{where}: {describe(errors[0])}")
        out.append((agent_id, agent))
    return out


def describe(item: dict[str, Any]) -> str:
    """One pydantic-style error item as ``field.path: message``."""
    loc = [str(p) for p in item.get("loc", [])[1:]]
    where = ".".join(loc)
    return f"{where}: {item.get('msg', 'invalid')}" if where else str(item.get("msg", "invalid"))
