"""Credentials of the local server (no sockets): token expiry is indexed, resume tokens are
bound to one session and replaced on each mint (issue 12.12, 12.14)."""

from __future__ import annotations

import statistics
import time

import pytest

from voicecli.server.auth import AuthFailure, Credentials


def _p50_ms(creds: Credentials, n: int, now: float) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        creds.mint("key", 600, 10800, now)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def test_minting_stays_flat_as_tokens_pile_up() -> None:
    creds = Credentials("key")
    now = 1000.0
    first = _p50_ms(creds, 500, now)
    for _ in range(8000):
        creds.mint("key", 600, 10800, now)
    last = _p50_ms(creds, 500, now)
    # before: every mint rebuilt the whole table (p50 1.2 ms -> 19.6 ms after 20,000)
    assert last < max(3 * first, first + 0.1), (first, last)


def test_expired_tokens_are_dropped_and_refused() -> None:
    creds = Credentials("key")
    token = creds.mint("key", 10, 60, 0.0)
    for i in range(100):
        creds.mint("key", 10, 60, float(i) / 100)
    assert creds.outstanding == 101
    creds.mint("key", 10, 60, 20.0)
    assert creds.outstanding == 1
    with pytest.raises(AuthFailure):
        creds.authenticate(None, token, 20.0)


def test_a_resume_token_is_replaced_by_the_next_one() -> None:
    creds = Credentials("key")
    old = creds.mint_resume("sess_a", "key")
    other = creds.mint_resume("sess_b", "key")
    new = creds.mint_resume("sess_a", "key")
    assert creds.authenticate(f"Bearer {new}", None, 0.0).resume_session_id == "sess_a"
    assert creds.resume_token_current("sess_a", new) and not creds.resume_token_current("sess_a", old)
    with pytest.raises(AuthFailure):
        creds.authenticate(f"Bearer {old}", None, 0.0)
    creds.forget_session("sess_a")
    with pytest.raises(AuthFailure):
        creds.authenticate(f"Bearer {new}", None, 0.0)
    assert creds.authenticate(None, other, 0.0).resume_session_id == "sess_b"
