"""Config loading (voicecli/config.py, voicecli/settings.py): precedence flag > environment > file
(profile over top level) > default, sources, and every error path. Real files in tmp_path; no event loop."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import ROOT
from voicecli.config import CommonFlags, load
from voicecli.errors import ConfigError, UsageError
from voicecli.protocol.constants import DEFAULT_URL
from voicecli.settings import resolve
from voicecli.tools import CallableTool, CommandTool

ENV_NAMES = ("ASSEMBLYAI_API_KEY", "VOICECLI_URL", "VOICECLI_VOICE", "VOICECLI_PROFILE", "VOICECLI_CONFIG",
             "VOICECLI_DUPLEX", "VOICECLI_PREBUFFER_MS", "VOICECLI_LOCAL", "VOICECLI_GREETING",
             "VOICECLI_SYSTEM_PROMPT", "VOICECLI_AGENT_ID", "VOICECLI_INPUT_DEVICE")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def write(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    path.chmod(mode)
    return path


BASE = '''
url = "ws://file.example/v1/ws"
api_key = "file-key"
system_prompt = "From the file."
duplex = "half"

[output]
voice = "anna"

[profiles.work]
url = "ws://profile.example/v1/ws"
[profiles.work.output]
voice = "george"
[profiles.work.input.turn_detection]
min_silence = 300
'''


def test_defaults_without_a_file() -> None:
    eff = load(CommonFlags())
    assert not eff.exists and eff.path.name == "config.toml" and "xdg" in str(eff.path)
    r = resolve(CommonFlags(api_key="k"))
    assert r.url == DEFAULT_URL and r.session == {} and r.tools == []
    assert r.client == {"input_device": None, "output_device": None, "duplex": None, "echo": None, "prebuffer_ms": None,
                        "record_dir": None, "tool_concurrency": None, "max_tool_calls": None,
                        "url": DEFAULT_URL, "local_scenario": None}


def test_file_then_profile_then_env_then_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, BASE)
    r = resolve(CommonFlags(config_path=str(path)))
    assert (r.url, r.api_key, r.session["output"]["voice"]) == ("ws://file.example/v1/ws", "file-key", "anna")
    assert r.client["duplex"] == "half" and r.session["system_prompt"] == "From the file."

    r = resolve(CommonFlags(config_path=str(path), profile="work"))
    assert r.url == "ws://profile.example/v1/ws" and r.session["output"]["voice"] == "george"
    assert r.session["input"] == {"turn_detection": {"min_silence": 300}}

    monkeypatch.setenv("VOICECLI_URL", "ws://env.example/v1/ws")
    monkeypatch.setenv("VOICECLI_VOICE", "jane")
    monkeypatch.setenv("ASSEMBLYAI_API_KEY", "env-key")
    monkeypatch.setenv("VOICECLI_PROFILE", "work")
    eff = load(CommonFlags(config_path=str(path)))
    assert eff.get("url") == "ws://env.example/v1/ws" and eff.source("url").label == "env VOICECLI_URL"
    assert eff.get("output.voice") == "jane" and eff.get("api_key") == "env-key"
    assert eff.get("input.turn_detection.min_silence") == 300          # the profile still applies
    assert eff.source("input.turn_detection.min_silence").label.endswith("line 15 [profiles.work]")

    r = resolve(CommonFlags(config_path=str(path), url="ws://flag.example/v1/ws", voice="eve",
                            api_key="flag-key"))
    assert (r.url, r.session["output"]["voice"], r.api_key) == ("ws://flag.example/v1/ws", "eve", "flag-key")


def test_a_flag_filled_from_its_environment_variable_is_reported_as_env(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICECLI_URL", "ws://env.example/v1/ws")      # Typer copies it into --url
    eff = load(CommonFlags(url="ws://env.example/v1/ws"))
    assert eff.source("url").label == "env VOICECLI_URL"


def test_local_in_a_higher_layer_wins_over_url(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "[profiles.offline]\nlocal = true\n")
    r = resolve(CommonFlags(config_path=str(path), profile="offline"))
    assert r.local is True
    r = resolve(CommonFlags(config_path=str(path), profile="offline", url="ws://x.example/v1/ws"))
    assert r.local is False and r.url == "ws://x.example/v1/ws"
    with pytest.raises(UsageError, match="--url and --local cannot be combined"):
        resolve(CommonFlags(url="ws://x.example/v1/ws", local=True))


def test_agent_id_flag_overrides_inline_file_fields(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    eff = load(CommonFlags(config_path=str(path), agent_id="agent-1"))
    assert "system_prompt" in eff.ignored and "output.voice" in eff.ignored
    assert resolve(CommonFlags(config_path=str(path), agent_id="agent-1")).session == {"agent_id": "agent-1"}
    with pytest.raises(UsageError, match="cannot be combined"):
        resolve(CommonFlags(api_key="k", agent_id="a", voice="alba"))
    same_layer = write(tmp_path, 'api_key = "k"\nagent_id = "a"\ngreeting = "hi"\n')
    with pytest.raises(ConfigError, match="agent_id .* cannot be combined with greeting"):
        resolve(CommonFlags(config_path=str(same_layer)))


def test_tools_are_declared_flat_and_built(tmp_path: Path) -> None:
    (tmp_path / "mytools_settings.py").write_text("def hello(name):\n    return name\n")
    path = write(tmp_path, '''
api_key = "k"
[[tools]]
name = "get_weather"
description = "Weather"
parameters = { type = "object", properties = { city = { type = "string" } }, required = ["city"] }
command = ["python3", "weather.py"]
cwd = "."
timeout_seconds = 10
execution_mode = "interactive"

[[tools]]
name = "hello"
callable = "mytools_settings:hello"
''')
    r = resolve(CommonFlags(config_path=str(path)))
    assert r.session["tools"] == [
        {"type": "function", "name": "get_weather", "description": "Weather",
         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
         "execution_mode": "interactive", "timeout_seconds": 10},
        {"type": "function", "name": "hello", "description": "",
         "parameters": {"type": "object", "properties": {}, "required": []}},
    ]
    command, fn = r.tools
    assert isinstance(command, CommandTool) and command.argv == ["python3", "weather.py"]
    assert command.cwd == str(tmp_path.resolve()) and command.timeout_s == 10
    assert isinstance(fn, CallableTool) and fn.function("x") == "x" and fn.timeout_s == 120


@pytest.mark.parametrize("text, message", [
    ('url = "ws://x"\nvoice = \n', r"config\.toml, line 2, key voice: not valid TOML"),
    ('api_key = "k"\nvoise = "alba"\n', r"line 2, key voise: unknown key"),
    ('[output]\nvoice = "alba"\nduplex = "half"\n',
     r"line 3, key output.duplex: unknown key \(duplex is a top-level key"),
    ('prebuffer_ms = "lots"\n', r"line 1, key prebuffer_ms: must be a whole number, not a string"),
    ('[input.turn_detection]\nmin_silence = 900\nmax_silence = 500\n',
     r"line 2, key input.turn_detection.min_silence: 'input.turn_detection.min_silence' must be strictly "
     r"less than 'max_silence'"),
    ('[input]\nformat = { encoding = "audio/pcm", sample_rate = 16000 }\n',
     r"line 2, key input.format.sample_rate: 'input.format.sample_rate' must be 24000"),
    ('\n\n[output]\nvoice = "bob"\n', r"line 4, key output.voice: unknown voice 'bob'"),
    ('[profiles.p.output]\nvolume = 300\n', r"line 3, key profiles.p.output.volume: .*between 0 and 100"),
    ('[[tools]]\nname = "t"\ndescription = "d"\n', r"line 1, key tools\[0\]: a tool needs exactly one of"),
    ('[[tools]]\nname = "t"\ncommand = "python3 t.py"\n',
     r"line 3, key tools\[0\].command: must be a list of strings, not a string"),
    ('[[tools]]\nname = "t"\ncommand = ["x"]\n[[tools]]\nname = "u"\ncallable = "no_such_mod_q:f"\n',
     r"line 6, key tools\[1\].callable: cannot import module 'no_such_mod_q'"),
    ('[[tools]]\nname = "t"\ncommand = ["x"]\ntimeout_seconds = 900\n',
     r"line 4, key tools\[0\].timeout_seconds: .*between 1 and 300"),
    ('token = "abc"\n', r"line 1, key token: temporary tokens are single-use"),
    ('duplex = "quarter"\n', r"line 1, key duplex: must be full or half"),
    ('echo = "loud"\n', r"line 1, key echo: must be aec, half or off"),
    ('url = "http://x"\n', r"line 1, key url: must start with ws:// or wss://"),
])
def test_bad_files_name_path_line_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, 'api_key = "k"\n' + text if text.startswith("[profiles") else text)
    flags = CommonFlags(config_path=str(path), api_key="k",
                        profile="p" if "profiles.p" in text else None)
    with pytest.raises(ConfigError, match=message) as info:
        resolve(flags)
    assert str(path) in info.value.one_line() and "\n" not in info.value.one_line()
    assert info.value.exit_code == 2


def test_profile_keys_are_checked_even_when_not_selected(tmp_path: Path) -> None:
    path = write(tmp_path, '[profiles.other]\nvoise = "x"\n')
    with pytest.raises(ConfigError, match="line 2, key profiles.other.voise: unknown key"):
        resolve(CommonFlags(config_path=str(path), api_key="k"))


def test_missing_profile_and_missing_file(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    with pytest.raises(ConfigError, match=r"no profile 'home' in config file .* \(profiles: work\)"):
        resolve(CommonFlags(config_path=str(path), profile="home"))
    with pytest.raises(ConfigError, match="no profile 'home': there is no config file at"):
        resolve(CommonFlags(profile="home", api_key="k"))
    with pytest.raises(ConfigError, match="config file .*nope.toml does not exist"):
        resolve(CommonFlags(config_path=str(tmp_path / "nope.toml"), api_key="k"))


def test_bad_environment_and_flag_values() -> None:
    os.environ["VOICECLI_PREBUFFER_MS"] = "soon"
    try:
        with pytest.raises(ConfigError, match="environment variable VOICECLI_PREBUFFER_MS must be a whole"):
            resolve(CommonFlags(api_key="k"))
    finally:
        del os.environ["VOICECLI_PREBUFFER_MS"]
    with pytest.raises(UsageError, match="invalid --voice: unknown voice 'bob'"):
        resolve(CommonFlags(api_key="k", voice="bob"))


def test_world_readable_file_with_a_key_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, 'api_key = "sekrit-123"\n', mode=0o644)
    resolve(CommonFlags(config_path=str(path)))
    err = capsys.readouterr().err
    assert f"holds an API key and is readable by other users; run: chmod 600 {path}" in err
    assert "sekrit-123" not in err
    path.chmod(0o600)
    resolve(CommonFlags(config_path=str(path)))
    assert capsys.readouterr().err == ""


def test_missing_key_is_a_usage_error_except_for_a_server_on_this_machine() -> None:
    with pytest.raises(UsageError, match="no API key"):
        resolve(CommonFlags())
    with pytest.raises(UsageError, match="no API key"):
        resolve(CommonFlags(url="ws://192.0.2.1:8765/v1/ws"))
    local = resolve(CommonFlags(url="ws://127.0.0.1:8765/v1/ws"))
    assert local.api_key is None and local.token is None


def test_config_example_loads_with_every_profile() -> None:
    path = ROOT / "config.example.toml"
    for profile in (None, "local", "uk", "patient"):
        r = resolve(CommonFlags(config_path=str(path), profile=profile, api_key="k"))
        assert r.session["tools"][0]["name"] == "get_weather"
    uk = resolve(CommonFlags(config_path=str(path), profile="uk", api_key="k"))
    assert uk.session["output"]["voice"] == "anna"
