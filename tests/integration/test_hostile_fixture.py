"""The hostile-server test double's polite core holds a normal `voicecli ask` (so a failing client
test against it means the attack, not the fixture), and its death switch really kills connections."""

from __future__ import annotations

from tests.conftest import EXAMPLES, run_cli
from tests.hostile_server import HostileServer, Hostility

HELLO = str(EXAMPLES / "hello.wav")


def test_polite_core_answers_ask() -> None:
    with HostileServer() as srv:
        r = run_cli("ask", HELLO, "--url", srv.url, "--api-key", "k", "--pace", "fast", "--timeout", "20")
    assert r.code == 0, r.stderr
    assert r.stdout.strip() == "Hello from the hostile server."
    assert srv.stats.updates == 1 and srv.stats.replies == 1
    assert srv.stats.client_events["session.end"] == 1


def test_death_switch_drops_the_connection_and_resume_is_accepted() -> None:
    with HostileServer(Hostility(die_after_audio_ms=300, die_times=1)) as srv:
        r = run_cli("ask", HELLO, "--url", srv.url, "--api-key", "k", "--pace", "fast", "--timeout", "30")
    assert srv.stats.deaths == 1 and srv.stats.resumes >= 1, (srv.stats, r.stderr)
    assert r.code == 0, r.stderr
