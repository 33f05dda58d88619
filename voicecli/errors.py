"""One exception tree, one exit-code map (design.md principle 11).

Every error a user can cause is raised as a :class:`VoicecliError` subclass whose
message is one sentence saying what happened, and whose ``hint`` says what to do.
Each class's ``exit_code`` is its :class:`~voicecli.status.ExitStatus` (cli-contract.md);
:func:`voicecli.core.run_command` prints :meth:`VoicecliError.one_line` and exits with it.

The ``EXIT_*`` names are aliases of the enum members, kept for modules not yet using
:class:`ExitStatus` directly.
"""

from __future__ import annotations

from typing import ClassVar, Final

from voicecli.status import ExitStatus

# Typed int (not ExitStatus) so existing ``code: int = EXIT_OK`` style code keeps type-checking.
EXIT_OK: Final[int] = ExitStatus.OK
EXIT_ERROR: Final[int] = ExitStatus.ERROR
EXIT_USAGE: Final[int] = ExitStatus.USAGE
EXIT_AUTH: Final[int] = ExitStatus.AUTH
EXIT_CONNECT: Final[int] = ExitStatus.CONNECT
EXIT_PROTOCOL: Final[int] = ExitStatus.PROTOCOL
EXIT_AUDIO: Final[int] = ExitStatus.AUDIO
EXIT_TIMEOUT: Final[int] = ExitStatus.TIMEOUT
EXIT_INTERRUPTED: Final[int] = ExitStatus.INTERRUPTED


class VoicecliError(Exception):
    """Base of every error voicecli reports to a user."""

    exit_code: ClassVar[ExitStatus] = ExitStatus.ERROR

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
    exit_code = ExitStatus.USAGE


class ConfigError(UsageError):
    """A broken config file or an invalid setting (exit 2)."""


class AuthError(VoicecliError):
    exit_code = ExitStatus.AUTH


class ConnectError(VoicecliError):
    """Cannot connect, or the connection was lost for good."""

    exit_code = ExitStatus.CONNECT


class ServerError(VoicecliError):
    """The server reported an error, or broke the protocol."""

    exit_code = ExitStatus.PROTOCOL

    def __init__(self, message: str, hint: str | None = None, code: str | None = None) -> None:
        super().__init__(message, hint)
        self.code = code


class AudioError(VoicecliError):
    exit_code = ExitStatus.AUDIO


class AudioFileError(AudioError):
    """An input file that is missing, empty, corrupt or not audio."""


class AudioDeviceError(AudioError):
    """No device, an unusable device, or PortAudio failing mid-session."""


class ExpectationFailed(VoicecliError):
    """``ask --expect``: a reply did not say what the script expected (exit 1)."""


class TimeoutExpired(VoicecliError):
    exit_code = ExitStatus.TIMEOUT
