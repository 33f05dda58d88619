"""The server a command talks to: the given URL, or the embedded local server (``--local``)."""

from __future__ import annotations

from typing import Any

from voicecli.app.conversation import ConnectionSettings
from voicecli.settings import Resolved


class Endpoint:
    """Context manager. With ``local`` it starts a :class:`ServerThread` on a free port and points
    ``url`` at it (any key is accepted there, so a placeholder key is used when none is set)."""

    def __init__(self, resolved: Resolved, llm: tuple[str, str] | None = None) -> None:
        self.llm = llm       # (url, model): the local server's brain (--llm-url/--llm-model)
        self.local = resolved.local
        self.url = resolved.url
        self.api_key = resolved.api_key
        self.token = resolved.token
        self.client = resolved.client
        self._thread: Any = None
        self._agents: dict[tuple[str, str], str] = {}   # --agent-id NAME -> id, looked up once

    def __enter__(self) -> Endpoint:
        if self.local:
            from voicecli.server.app import ServerThread
            from voicecli.server.options import ServerOptions
            options = ServerOptions(port=0)
            if self.llm is not None:
                options.llm_url, options.llm_model = self.llm
            self._thread = ServerThread(options)
            self.url = self._thread.start()
            scenario = self.client.get("local_scenario")
            if scenario and self.llm is None:
                # config key local_scenario: the local server's scripted engine (tests, demos); a
                # model given with --llm-url answers instead
                from urllib.parse import urlencode
                self.url += "?" + urlencode({"scenario": scenario})
            if not self.api_key and not self.token:
                self.api_key = "local"
        return self

    def connection(self, session: dict[str, Any], **options: Any) -> ConnectionSettings:
        """Settings for a :class:`Conversation` with this endpoint (call inside ``with``). An
        ``agent_id`` that is a name is resolved through the server's agents list."""
        from voicecli.app.agents_api import bind_agent
        session = bind_agent(session, self.url, self.api_key, self._agents)
        return ConnectionSettings(url=self.url, session=session, api_key=self.api_key, token=self.token,
                                  **options)

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._thread.stop()
            self._thread = None
