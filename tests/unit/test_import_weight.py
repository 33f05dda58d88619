"""`voicecli --help` loads only what it needs (issue 10, Cost: `--help` <= 0.2 s): no event loop,
no event classes, no numpy/rich/sounddevice/websockets. bench/cost_bench.py prints its wall time."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("asyncio", "numpy", "rich", "sounddevice", "websockets", "voicecli.protocol.events", "pydantic")


def _loaded_after(*argv: str) -> list[str]:
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['voicecli', *{list(argv)!r}]\n"
        "try:\n    runpy.run_module('voicecli.cli', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        f"print('loaded:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    line = out.stdout.rsplit("loaded:", 1)[1].strip()
    return [m for m in line.split(",") if m]


def test_help_loads_no_heavy_modules() -> None:
    assert _loaded_after("--help") == []


def test_protocol_package_still_re_exports_the_events() -> None:
    import voicecli.protocol as protocol
    from voicecli.protocol import events

    assert protocol.SessionUpdate is events.SessionUpdate
    assert protocol.__all__ == events.__all__


def test_plain_and_json_chat_do_not_load_rich() -> None:
    """rich is for the TTY view only (and pydantic for nothing): `chat --no-ui` / `--json` run without it (issue 10: RSS). The
    chat ends early here (no server on port 9, maybe no audio device), after its imports ran."""
    for mode in ("--json", "--no-ui"):
        loaded = _loaded_after("chat", mode, "--url", "ws://127.0.0.1:9/v1/ws", "--api-key", "k")
        assert "rich" not in loaded, mode
        assert "pydantic" not in loaded, mode   # typer <0.29 (pyproject): 0.29 imports it for every command
        assert "voicecli.protocol.events" in loaded     # the chat's own modules did load


def test_loading_portaudio_libasound_libc_and_libpulse_starts_no_child_process() -> None:
    """ctypes.util.find_library runs `ldconfig -p` (a ~30 MiB child, ~10 ms) per call on Linux: the
    chat used to start three of them while opening its devices, plus one for libpulse. Counted with
    the interpreter's own audit events, in a fresh interpreter (nothing loaded before)."""
    code = (
        "import sys\n"
        "spawned = []\n"
        "sys.addaudithook(lambda ev, args: spawned.append(args[0]) if ev == 'subprocess.Popen' else None)\n"
        "from voicecli.audio import devices, soundserver\n"
        "devices.backend()\n"
        "devices.quiet_c_stderr()()\n"
        "soundserver._pulsectl()\n"
        "print('spawned:', spawned)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert "spawned: []" in out.stdout, out.stdout + out.stderr


def test_a_library_without_a_known_soname_is_still_found_the_usual_way() -> None:
    import ctypes.util

    from voicecli.audio import libs
    assert libs.find("c") == "libc.so.6"                      # Linux (CI): the soname, loadable
    assert libs.find("m") == ctypes.util.find_library("m")    # not in the table: ctypes' own answer
    assert libs.find("voicecli-no-such-library") is None
    with libs.sonames_first():
        assert ctypes.util.find_library("asound") == "libasound.so.2"
    assert ctypes.util.find_library is libs._real_find        # restored
