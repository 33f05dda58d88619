"""The exit statuses of cli-contract.md, in one enum (httpie ``status.py``).

0 ok · 1 error · 2 usage · 3 auth refused · 4 cannot connect / connection lost for good ·
5 server or protocol error · 6 audio device or audio file error · 7 timeout · 130 Ctrl-C.

Which exception maps to which status is each exception class's ``exit_code``
(:mod:`voicecli.errors`); :func:`voicecli.core.run_command` applies it.
"""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    AUTH = 3
    CONNECT = 4
    PROTOCOL = 5
    AUDIO = 6
    TIMEOUT = 7
    INTERRUPTED = 130
