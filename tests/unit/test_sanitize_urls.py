"""Untrusted text and URLs: the sanitizer strips every invisible/format/bidi character by Unicode
category (issue 12 item 15), and URLs shown to a user never carry a password or a port we cannot use."""

from __future__ import annotations

import sys
import unicodedata

import pytest

from voicecli.errors import UsageError
from voicecli.ui.sanitize import clean
from voicecli.urls import check_url, redact_url, url_problem


@pytest.mark.parametrize("ch", ["\u061c", "\u200b", "\u2060", "\ufeff", "\u202e", "\u2067", "\u200f",
                                "\U000e0041", "\u00ad"])
def test_format_characters_are_removed(ch: str) -> None:
    assert clean(f"a{ch}b") == "ab"


@pytest.mark.parametrize("ch", ["\u2028", "\u2029", "\r", "\x85", "\n\n\t"])
def test_line_breaks_fold_to_one_space(ch: str) -> None:
    assert clean(f"a{ch}b") == "a b"


def test_no_character_of_the_stripped_categories_survives() -> None:
    every = "".join(chr(c) for c in range(sys.maxunicode + 1)
                    if unicodedata.category(chr(c)) in ("Cc", "Cf", "Zl", "Zp", "Cs"))
    out = clean(every, limit=10**7)
    assert {unicodedata.category(c) for c in out} <= {"Zs"}, out[:40]


def test_printable_text_is_untouched() -> None:
    text = "Héllo, 世界 👋 مرحبا — 12\u00a0°C"
    assert clean(text) == text


def test_redact_url_hides_credentials() -> None:
    assert redact_url("ws://user:KEY@host:1/v1/ws") == "ws://***@host:1/v1/ws"
    assert redact_url("wss://KEY@host/v1/ws?token=T&x=1") == "wss://***@host/v1/ws?token=***&x=1"
    assert "KEY" not in redact_url("ws://u:KEY@[::1/x")


@pytest.mark.parametrize("url", ["ws://127.0.0.1:99999/v1/ws", "ws://127.0.0.1:abc/v1/ws", "ws://h:0/"])
def test_bad_ports_are_usage_errors(url: str) -> None:
    assert url_problem(url) == "its port must be a number from 1 to 65535"
    with pytest.raises(UsageError, match="port"):
        check_url(url)


def test_good_urls_pass() -> None:
    for url in ("ws://127.0.0.1:8765/v1/ws", "wss://agents.assemblyai.com/v1/ws", "ws://[::1]:80/x"):
        assert url_problem(url) is None and check_url(url) == url
