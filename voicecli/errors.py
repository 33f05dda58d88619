"""One exception tree, one exit-code map (design.md principle 11).

Every error a user can cause is raised as a :class:`VoicecliError` subclass whose
message is one sentence saying what happened, and whose ``hint`` says what to do.
``cli.py`` catches them and maps them to the exit codes of cli-contract.md:

0 ok · 1 error · 2 usage · 3 auth refused · 4 cannot connect / connection lost for good ·
5 server or protocol error · 6 audio device or audio file error · 7 timeout · 130 Ctrl-C.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_CONNECT = 4
EXIT_PROTOCOL = 5
EXIT_AUDIO = 6
EXIT_TIMEOUT = 7
EXIT_INTERRUPTED = 130


class VoicecliError(Exception):
    """Base of every error voicecli reports to a user."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """The message and hint as one line, for stderr."""
        if self.hint:
            return f"{self.message.rstrip('.')} ({self.hint})"
        return self.message


class UsageError(VoicecliError):
    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """A broken config file or an invalid setting (exit 2)."""


class AuthError(VoicecliError):
    exit_code = EXIT_AUTH


class ConnectError(VoicecliError):
    """Cannot connect, or the connection was lost for good."""

    exit_code = EXIT_CONNECT


class ServerError(VoicecliError):
    """The server reported an error, or broke the protocol."""

    exit_code = EXIT_PROTOCOL

    def __init__(self, message: str, hint: str | None = None, code: str | None = None) -> None:
        super().__init__(message, hint)
        self.code = code


class AudioError(VoicecliError):
    exit_code = EXIT_AUDIO


class AudioFileError(AudioError):
    """An input file that is missing, empty, corrupt or not audio."""


class AudioDeviceError(AudioError):
    """No device, an unusable device, or PortAudio failing mid-session."""


class ExpectationFailed(VoicecliError):
    """``ask --expect``: a reply did not say what the script expected (exit 1)."""


class TimeoutExpired(VoicecliError):
    exit_code = EXIT_TIMEOUT
