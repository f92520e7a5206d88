"""Server-side sessions and the sign-in failure limiter: pure, time given."""

from __future__ import annotations

import pytest

from vitalstream.auth.roles import ROLES, ActorError, actor_from, may
from vitalstream.auth.sessions import FailureLimiter, SessionStore

pytestmark = pytest.mark.security


def test_a_session_ends_at_its_absolute_age_even_when_used() -> None:
    sessions = SessionStore(max_age_s=100, idle_s=30)
    sid = sessions.create("u-1", now_s=0.0)
    for t in range(10, 100, 10):
        assert sessions.get(sid, now_s=float(t)) is not None
    assert sessions.get(sid, now_s=101.0) is None


def test_session_ids_are_random_and_ending_a_user_ends_all_of_theirs() -> None:
    sessions = SessionStore()
    ids = {sessions.create("u-1", 0.0) for _ in range(3)} | {sessions.create("u-2", 0.0)}
    assert len(ids) == 4 and all(len(i) >= 40 for i in ids)
    assert sessions.end_user("u-1") == 3 and len(sessions) == 1


def test_sessions_are_bounded() -> None:
    sessions = SessionStore(max_sessions=3)
    first = sessions.create("u-1", 0.0)
    for _ in range(3):
        sessions.create("u-2", 0.0)
    assert len(sessions) == 3 and sessions.get(first, 0.0) is None


def test_limiter_refuses_until_the_oldest_failure_leaves_the_window_and_forgets_on_success() -> None:
    limiter = FailureLimiter(limit=3, window_s=60)
    for t in (0.0, 10.0, 20.0):
        assert limiter.retry_after("eve", t) == 0
        limiter.failed("eve", t)
    assert limiter.retry_after("eve", 25.0) == 35
    assert limiter.retry_after("eve", 60.0) == 0  # the failure at 0 s has left the window
    limiter.failed("eve", 61.0)
    assert limiter.retry_after("eve", 62.0) > 0
    limiter.succeeded("eve")
    assert limiter.retry_after("eve", 62.0) == 0


def test_limiter_memory_is_bounded_against_a_spray_of_user_names() -> None:
    limiter = FailureLimiter(limit=5, window_s=300, max_keys=1000)
    for n in range(10_000):
        limiter.failed(f"user-{n}", 1.0)
    assert len(limiter._failures) == 1000


def test_roles_and_actors() -> None:
    assert set(ROLES) == {"bedside_nurse", "charge_nurse", "rapid_response", "physician", "admin"}
    assert may("rapid_response", "acknowledge") and not may("admin", "settings") and may("admin", "manage_users")
    assert actor_from({"actor": {"user_id": "u-1", "role": "physician", "name": "Dr A"}})["role"] == "physician"
    for bad in ({}, {"actor": "Dr. House"}, {"actor": {"user_id": "u-1", "role": "surgeon", "name": "X"}},
                {"actor": {"user_id": "", "role": "physician", "name": "X"}}):
        with pytest.raises(ActorError):
            actor_from(bad)
