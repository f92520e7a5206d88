"""Server-side sessions and sign-in throttling for the station. Pure: time is an argument.

A session id is 32 random bytes (``secrets.token_urlsafe``) in the cookie; the server keeps
what it means (the user, when it started, when it was last used). A session ends at its
absolute expiry, after an idle time without a request, at sign-out, and as soon as its user
is disabled or removed from the user file (``SessionStore.get`` checks the user each time).

>>> sessions = SessionStore(max_age_s=3600, idle_s=600)
>>> sid = sessions.create("u-1", now_s=0.0)
>>> sessions.get(sid, now_s=300.0).user_id
'u-1'
>>> sessions.get(sid, now_s=1000.0) is None   # idle for more than 600 s
True
>>> limiter = FailureLimiter(limit=3, window_s=60)
>>> for t in (0, 1, 2): limiter.failed("anna", t)
>>> limiter.retry_after("anna", 3.0)
57
"""

from __future__ import annotations

import dataclasses
import secrets
from collections import OrderedDict, deque
from typing import Any


@dataclasses.dataclass(slots=True)
class Session:
    """A signed-in user's session (``user_id``), or a wall board's (``board``: what it shows)."""

    user_id: str
    started_s: float
    seen_s: float
    board: Any = None


class SessionStore:
    """Session id -> Session, bounded (the oldest sessions go first past ``max_sessions``)."""

    def __init__(self, max_age_s: float = 12 * 3600, idle_s: float = 30 * 60,
                 max_sessions: int = 10_000) -> None:
        self.max_age_s = max_age_s
        self.idle_s = idle_s
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, user_id: str, now_s: float, board: Any = None) -> str:
        session_id = secrets.token_urlsafe(32)
        self._sessions[session_id] = Session(user_id, now_s, now_s, board)
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)
        return session_id

    def get(self, session_id: str | None, now_s: float, touch: bool = True) -> Session | None:
        """The live session, touched (its idle time starts again); None if expired or unknown."""
        session = self._sessions.get(session_id or "")
        if session is None:
            return None
        if now_s - session.started_s > self.max_age_s or now_s - session.seen_s > self.idle_s:
            del self._sessions[session_id]  # type: ignore[arg-type]
            return None
        if touch:
            session.seen_s = now_s
        return session

    def end(self, session_id: str | None) -> None:
        self._sessions.pop(session_id or "", None)

    def end_user(self, user_id: str) -> int:
        """End every session of a user (disabled, or signed out everywhere); how many."""
        ended = [sid for sid, s in self._sessions.items() if s.user_id == user_id]
        for sid in ended:
            del self._sessions[sid]
        return len(ended)


class FailureLimiter:
    """At most ``limit`` failed sign-ins per key (a user name, a client address) within
    ``window_s``; past it, sign-in is refused for that key until the oldest failure leaves
    the window (``retry_after``). Bounded: at most ``max_keys`` keys are remembered."""

    def __init__(self, limit: int, window_s: float, max_keys: int = 50_000) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str, now_s: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and now_s - times[0] >= self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def retry_after(self, key: str, now_s: float) -> int:
        """Seconds until ``key`` may try again (0: now)."""
        times = self._recent(key, now_s)
        if times is None or len(times) < self.limit:
            return 0
        return max(1, int(times[-self.limit] + self.window_s - now_s + 0.999))

    def failed(self, key: str, now_s: float) -> None:
        times = self._recent(key, now_s)
        if times is None:
            times = self._failures[key] = deque(maxlen=self.limit)
        times.append(now_s)
        self._failures.move_to_end(key)
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)
