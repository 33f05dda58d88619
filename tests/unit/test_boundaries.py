"""The sans-I/O core imports no I/O library (design.md principle 1), checked in a clean
interpreter so other tests' imports cannot hide a violation."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("asyncio", "websockets", "sounddevice", "rich", "numpy", "typer")


def test_protocol_and_session_import_no_io_libraries() -> None:
    code = (
        "import sys\n"
        "import voicecli.protocol, voicecli.protocol.config, voicecli.session\n"
        f"bad = [m for m in {FORBIDDEN!r} if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"sans-I/O core imported: {out.stdout.strip()}"


def test_cli_help_does_not_import_sounddevice() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from voicecli.cli import app\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print('sounddevice' in sys.modules, 'numpy' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_protocol_star_import_exports_only_the_public_names() -> None:
    import inspect

    from voicecli.protocol import events

    namespace: dict[str, object] = {}
    exec("from voicecli.protocol import *", namespace)
    # the package's own submodules (bound as attributes when imported) are not re-exports
    exported = {n for n, v in namespace.items() if n != "__builtins__" and not inspect.ismodule(v)}
    assert exported == set(events.__all__)
    assert not exported & {"json", "base64", "binascii", "dataclass", "field", "Any", "Union"}
    public = {n for n, v in vars(events).items() if not n.startswith("_") and
              (inspect.isclass(v) or inspect.isfunction(v)) and v.__module__ == events.__name__}
    assert public <= exported, f"public but not in events.__all__: {sorted(public - exported)}"


SERVER_CORE = ("voicecli.server.agent", "voicecli.server.replies", "voicecli.server.effects",
               "voicecli.server.session", "voicecli.server.engines", "voicecli.server.turns",
               "voicecli.server.options")


def test_server_conversation_modules_import_no_asyncio_or_websockets() -> None:
    """The server's agent session is sans-I/O too: only the pump layer touches the loop."""
    code = (
        "import sys, importlib\n"
        f"for m in {SERVER_CORE!r}: importlib.import_module(m)\n"
        "print(','.join(m for m in ('asyncio', 'websockets') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"server conversation modules imported: {out.stdout.strip()}"
