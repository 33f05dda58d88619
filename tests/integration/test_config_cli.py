"""`voicecli config init|show|path` and config handling of `ask`, through the real entry point
(issue 4): precedence, profiles, every error path exits 2 with one line before connecting."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from tests.conftest import EXAMPLES, ROOT, Served, run_cli

HELLO = str(EXAMPLES / "hello.wav")
FAST = ("--pace", "fast", "--trailing-silence", "800")
UNREACHABLE = "ws://127.0.0.1:9/v1/ws"


def xdg(tmp_path: Path) -> dict[str, str]:
    return {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}


def test_config_path_follows_xdg_then_env_then_flag(tmp_path: Path) -> None:
    r = run_cli("config", "path", env=xdg(tmp_path))
    assert (r.code, r.stdout) == (0, f"{tmp_path}/xdg/voicecli/config.toml\n")
    r = run_cli("config", "path", env={**xdg(tmp_path), "VOICECLI_CONFIG": "/etc/v.toml"})
    assert r.stdout == "/etc/v.toml\n"
    r = run_cli("config", "path", "--config", "/x/y.toml", env={"VOICECLI_CONFIG": "/etc/v.toml"})
    assert r.stdout == "/x/y.toml\n"


def test_config_init_writes_a_private_starter_that_loads(tmp_path: Path) -> None:
    env = xdg(tmp_path)
    r = run_cli("config", "init", env=env)
    path = tmp_path / "xdg" / "voicecli" / "config.toml"
    assert (r.code, r.stdout) == (0, f"{path}\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = run_cli("config", "init", env=env)
    assert again.code == 2 and again.stderr == f"voicecli: error: {path} already exists (add --force to " \
                                               "overwrite it)\n"
    path.write_text("# mine\n")
    path.chmod(0o644)
    forced = run_cli("config", "init", "--force", env=env)
    assert forced.code == 0 and "# mine" not in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    shown = run_cli("config", "show", env=env)
    assert shown.code == 0, shown.stderr
    assert shown.stdout.startswith(f"# config file: {path}\n")


def test_example_files_load_as_is() -> None:
    for profile in ("", "local", "uk", "patient"):
        r = run_cli("config", "show", "--config", str(ROOT / "config.example.toml"),
                    *(("--profile", profile) if profile else ()), "--json")
        assert r.code == 0, r.stderr
        settings = json.loads(r.stdout)["settings"]
        assert settings["tools.get_weather"]["value"] == {"command": ["python3", "examples/weather.py"]}
    r = run_cli("config", "show", "--config", str(EXAMPLES / "tools.toml"))
    assert r.code == 0 and 'local_scenario = "tools"' in r.stdout


def test_config_show_reports_each_source(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('url = "ws://file.example/v1/ws"\ngreeting = "file"\n[output]\nvoice = "anna"\n'
                   '[profiles.work]\ngreeting = "profile"\nduplex = "half"\n')
    r = run_cli("config", "show", "--config", str(cfg), "--profile", "work", "--voice", "george",
                env={"VOICECLI_URL": "ws://env.example/v1/ws", "VOICECLI_PREBUFFER_MS": "200"})
    assert r.code == 0, r.stderr
    assert r.stdout.splitlines() == [
        f"# config file: {cfg}",
        "# profile: work",
        'url = "ws://env.example/v1/ws"  # env VOICECLI_URL',
        f'greeting = "profile"  # file {cfg} line 6 [profiles.work]',
        'output.voice = "george"  # flag --voice',
        f'duplex = "half"  # file {cfg} line 7 [profiles.work]',
        "prebuffer_ms = 200  # env VOICECLI_PREBUFFER_MS",
    ]


def test_precedence_reaches_the_server(scripted_server: Served, tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('api_key = "test-key"\n[output]\nvoice = "anna"\n'
                   '[profiles.work.output]\nvoice = "george"\n')
    cfg.chmod(0o600)

    def voice(*args: str, env: dict[str, str] | None = None) -> str:
        r = run_cli("ask", HELLO, "--url", scripted_server.at(scenario="echo"), "--config", str(cfg), *FAST,
                    "--json", *args, env=env)
        assert r.code == 0, r.stderr
        updated = [json.loads(line) for line in r.stdout.splitlines() if '"session.updated"' in line][0]
        return str(updated["config"]["output"]["voice"])

    assert voice() == "anna"                                                  # file
    assert voice("--profile", "work") == "george"                             # profile over top level
    assert voice("--profile", "work", env={"VOICECLI_VOICE": "jane"}) == "jane"   # env over file
    # flag
    assert voice("--voice", "eve", env={"VOICECLI_VOICE": "jane", "VOICECLI_PROFILE": "work"}) == "eve"


def bad(tmp_path: Path, text: str, *args: str, mode: int = 0o600) -> tuple[str, str]:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    cfg.chmod(mode)
    r = run_cli("ask", HELLO, "--url", UNREACHABLE, "--api-key", "k", "--config", str(cfg), *args)
    assert r.code == 2, r.stderr                                   # before connecting (else 4)
    assert r.stdout == "" and len(r.stderr.splitlines()) == 1
    return str(cfg), r.stderr.strip()


def test_every_config_error_is_one_line_with_path_line_and_key(tmp_path: Path) -> None:
    hint = "(config.example.toml documents every key)"
    path, err = bad(tmp_path, 'greeting = "hi"\n[output\nvoice = "alba"\n')
    assert err.startswith(f"voicecli: error: config file {path}, line 2 ('[output'): not valid TOML: ")
    path, err = bad(tmp_path, 'greeting = "hi"\nvoice = "alba"\n')
    assert err == f"voicecli: error: config file {path}, line 2, key voice: unknown key (did you mean " \
                  f"output.voice? set it in the [output] table) {hint}"
    path, err = bad(tmp_path, '[input.turn_detection]\nmin_silence = "short"\n')
    assert err == f"voicecli: error: config file {path}, line 2, key input.turn_detection.min_silence: " \
                  f"must be a whole number, not a string {hint}"
    path, err = bad(tmp_path, '[input.turn_detection]\nmax_silence = 800\nmin_silence = 800\n')
    assert err == f"voicecli: error: config file {path}, line 3, key input.turn_detection.min_silence: " \
                  f"'input.turn_detection.min_silence' must be strictly less than 'max_silence' {hint}"
    path, err = bad(tmp_path, '[output.format]\nsample_rate = 16000\n')
    assert err == f"voicecli: error: config file {path}, line 2, key output.format.sample_rate: " \
                  f"'output.format.sample_rate' must be 24000 for audio/pcm {hint}"
    path, err = bad(tmp_path, 'greeting = "hi"\n', "--profile", "nope")
    assert err == f"voicecli: error: no profile 'nope' in config file {path} (profiles: none) (add a " \
                  "[profiles.NAME] table or fix --profile / VOICECLI_PROFILE)"
    path, err = bad(tmp_path, '[[tools]]\nname = "t"\ncallable = "missing_mod_zz:run"\n')
    assert err.startswith(f"voicecli: error: config file {path}, line 3, key tools[0].callable: cannot "
                          "import module 'missing_mod_zz'")


def test_missing_config_file_and_bad_flag_values(tmp_path: Path) -> None:
    r = run_cli("ask", HELLO, "--url", UNREACHABLE, "--api-key", "k", "--config", str(tmp_path / "none.toml"))
    assert r.code == 2 and f"config file {tmp_path}/none.toml does not exist" in r.stderr
    r = run_cli("ask", HELLO, "--url", UNREACHABLE, "--api-key", "k", "--voice", "bob")
    assert (r.code, r.stderr) == (2, "voicecli: error: invalid --voice: unknown voice 'bob'\n")
    r = run_cli("ask", HELLO, "--api-key", "k", env={**xdg(tmp_path), "VOICECLI_URL": "http://x"})
    assert r.code == 2 and "invalid url from env VOICECLI_URL: must start with ws:// or wss://" in r.stderr


def test_world_readable_file_with_a_key_warns_once_without_the_key(scripted_server: Served,
                                                                   tmp_path: Path) -> None:
    cfg = tmp_path / "open.toml"
    cfg.write_text('api_key = "test-key"\n')
    cfg.chmod(0o644)
    r = run_cli("ask", HELLO, "--url", scripted_server.at(scenario="echo"), "--config", str(cfg), *FAST)
    assert r.code == 0, r.stderr
    assert r.stderr.count(f"voicecli: warning: config file {cfg} holds an API key and is readable by other "
                          f"users; run: chmod 600 {cfg}") == 1
    assert "test-key" not in r.stderr
