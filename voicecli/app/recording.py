"""``voicecli chat --record DIR``: a stereo WAV (user left, agent right) and a transcript JSON on one
session clock (anchors.md section 4 item 8).

The clock is ``time.monotonic()`` seconds; 0 is when the recording starts. The user channel is what
was sent as ``input.audio`` (muted stretches are silence), placed when the mic captured it. The
agent channel is what the speaker actually played: each reply from the moment its first sample was
heard, cut where a barge-in stopped it. Files: ``DIR/chat-YYYYmmdd-HHMMSS.wav`` and ``.json``.

Memory is bounded whatever arrives (issue 12 item 9): the WAV is written as audio is added
(:class:`~voicecli.audio.wav.SessionRecorder` streams it, so even a kill leaves a readable file of
everything recorded so far), and a reply's received audio, kept until the speaker says how much of
it was heard, is held in a spooled temporary file: in memory up to :data:`SPOOL_BYTES`, on disk
beyond (a flood of agent audio costs disk in the temporary folder, not memory). The transcript JSON
is written at the end.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from voicecli.audio.wav import SessionRecorder
from voicecli.errors import AudioFileError, UsageError
from voicecli.protocol.constants import RATE

SPOOL_BYTES = 256 * 1024
"""A pending reply's received audio kept in memory before it spills to a temporary file (~5 s)."""


class ChatRecorder:
    """Collects the session; :meth:`write` saves both files and returns their paths."""

    def __init__(self, directory: Path, t0: float) -> None:
        self.directory = prepare_dir(directory)
        self.t0 = t0
        self.started = time.strftime("%Y%m%d-%H%M%S")
        base = self.directory / f"chat-{self.started}"
        self.wav_path, self.json_path = base.with_suffix(".wav"), base.with_suffix(".json")
        self.wav = SessionRecorder(RATE, self.wav_path)     # streamed: created at the first audio
        self.entries: list[dict[str, Any]] = []
        self.meta: dict[str, Any] = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "rate": RATE,
                                     "channels": {"left": "user", "right": "agent"}}
        self._replies: dict[str, tempfile.SpooledTemporaryFile[bytes]] = {}

    def at(self, now: float) -> float:
        return round(max(0.0, now - self.t0), 3)

    def add_user(self, pcm: bytes, captured_at: float) -> None:
        self.wav.add_user(pcm, max(0.0, captured_at - self.t0))

    def agent_audio(self, reply_id: str, pcm: bytes) -> None:
        """Keep a reply's received audio until :meth:`agent_played` says how much was heard."""
        spool = self._replies.get(reply_id)
        if spool is None:
            spool = self._replies[reply_id] = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)
        spool.write(pcm)

    def agent_played(self, reply_id: str, heard_at: float | None, played_ms: float) -> None:
        """Place the first ``played_ms`` of the reply's audio at ``heard_at`` (None: never played)."""
        spool = self._replies.pop(reply_id, None)
        if spool is None:
            return
        with spool:
            if heard_at is None:
                return
            spool.seek(0)
            left = int(played_ms * RATE / 1000) * 2
            at = max(0.0, heard_at - self.t0)
            while left > 0:                       # one second at a time: bounded memory
                pcm = spool.read(min(left, RATE * 2))
                if not pcm:
                    break
                self.wav.add_agent(pcm, at)       # appended right after the previous second
                left -= len(pcm)

    def pending_replies(self) -> list[str]:
        return list(self._replies)

    def entry(self, role: str, text: str, now: float, **extra: Any) -> None:
        self.entries.append({"at_s": self.at(now), "role": role, "text": text, **extra})

    def write(self) -> tuple[Path, Path]:
        """Finish the WAV (already on disk) and write the transcript JSON; returns both paths."""
        wav_path, json_path = self.wav_path, self.json_path
        self.wav.close()
        doc = {**self.meta, "duration_s": round(self.wav.duration_s, 3), "wav": wav_path.name,
               "transcript": self.entries}
        try:
            json_path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        except OSError as exc:
            raise AudioFileError(f"cannot write {json_path} ({exc.strerror or exc})",
                                 "check the directory's permissions and free space") from None
        return wav_path, json_path


def prepare_dir(directory: Path) -> Path:
    """Check ``--record DIR`` before anything runs; UsageError (one line, exit 2) if it cannot be used.

    An existing writable directory is used as it is. A missing one is created only when its parent
    exists (like ``mkdir DIR``): a typo'd path (``/missing/dir``) fails instead of growing a tree of
    folders nobody asked for. A file in the way, or a directory that cannot be written, fails too."""
    directory = directory.expanduser()
    hint = "pass a writable --record DIR"
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"--record {directory} is not a directory", hint)
    if not directory.exists():
        parent = directory.parent
        if not parent.is_dir():
            raise UsageError(f"--record {directory}: the folder {parent} does not exist",
                             f"create it first (mkdir -p {directory}) or {hint}")
        try:
            directory.mkdir()
        except FileExistsError:
            pass
        except OSError as exc:
            raise UsageError(f"--record {directory}: cannot create it ({exc.strerror or exc})",
                             hint) from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UsageError(f"--record {directory} is not writable", hint)
    import tempfile
    try:     # permissions say yes to root and on read-only or pseudo file systems: try it
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise UsageError(f"--record {directory} is not writable ({exc.strerror or exc})", hint) from None
    return directory
