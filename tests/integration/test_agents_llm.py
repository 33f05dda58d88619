"""A stored agent's ``llm`` entry takes effect as an inline one would: its endpoint answers the
session's turns with the agent's prompt and key (the key is never echoed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.srvutil import FAST_TD, client, http_base, run, start_server, tone_speech

pytest.importorskip("openai", reason="the `llm` extra (openai) is not installed")

from tests.integration.test_agents_api import http  # noqa: E402
from tests.speech.openai_double import Answer, OpenAIDouble  # noqa: E402


def test_stored_agent_llm_is_the_sessions_brain(tmp_path: Path) -> None:
    with OpenAIDouble() as llm:
        llm.script(Answer("Stored brain says hi."))
        srv = start_server(agents_store=str(tmp_path / "agents.sqlite3"), llm_timeout_s=2.0)
        try:
            status, made = http("POST", http_base(srv.url) + "/v1/agents", {
                "name": "brainy", "system_prompt": "You are the stored agent.", "voice": {"voice_id": "alba"},
                "input": {"turn_detection": FAST_TD},
                "llm": [{"base_url": llm.base_url, "model": "agent-model", "api_key": "sk-agent"}]})
            assert status == 201 and "sk-agent" not in json.dumps(made)

            async def main() -> None:
                async with client(srv.url) as c:
                    ready = await c.start({"agent_id": made["id"]})
                    assert ready["config"]["llm"] == [{"base_url": llm.base_url, "model": "agent-model"}]
                    await c.send_pcm(tone_speech("hello"))
                    got = await c.until("reply.done")
                    said = next(e["text"] for e in got if e["type"] == "transcript.agent")
                    assert said == "Stored brain says hi."

            run(main())
        finally:
            srv.stop()
        request = llm.requests[-1]
        assert request.authorization == "Bearer sk-agent" and request.body["model"] == "agent-model"
        assert request.body["messages"][0]["content"].startswith("You are the stored agent.")
