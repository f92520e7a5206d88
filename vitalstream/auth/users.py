"""The local user store: who may sign in to the station, with which role and wards.

One JSON file, written by ``vitalstream users`` and read by the station service (it reads
the file again when it changes, so a disabled user is signed out within seconds):

    {"users": [
      {"user_id": "u-3f9c2a71", "username": "anna.smith", "name": "Anna Smith",
       "role": "bedside_nurse", "wards": ["4B"], "disabled": false,
       "password_hash": "$argon2id$v=19$m=65536,t=3,p=4$..."}
    ]}

``user_id`` is stable and never reused (actions and audits name it); ``username`` is what a
person types; ``name`` is what the board and the alert history show. Passwords are kept only
as argon2id hashes (argon2-cffi, its default parameters), at least ``MIN_PASSWORD_CHARS``
long. The file holds hashes, not passwords, but should still be readable by the station only
(mode 0600; ``vitalstream users`` writes it so).

>>> store = UserStore()
>>> user = store.add("anna.smith", "Anna Smith", "bedside_nurse", ["4B"], "correct horse battery")
>>> store.verify("anna.smith", "correct horse battery").actor()["role"]
'bedside_nurse'
>>> store.verify("anna.smith", "wrong password") is None
True
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from vitalstream.auth.roles import ROLES

MIN_PASSWORD_CHARS = 12
_HASHER = PasswordHasher()
# Verified when the user name is unknown, so the time does not tell which names exist.
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


class UserStoreError(ValueError):
    """A user file or a change that cannot be used; the message is one readable line."""


@dataclasses.dataclass(frozen=True, slots=True)
class User:
    user_id: str
    username: str
    name: str
    role: str
    wards: frozenset[str]
    password_hash: str = dataclasses.field(repr=False, default="")
    disabled: bool = False

    def actor(self) -> dict[str, str]:
        """What an action carries: ``{"user_id", "role", "name"}``."""
        return {"user_id": self.user_id, "role": self.role, "name": self.name}

    def to_dict(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "username": self.username, "name": self.name,
                "role": self.role, "wards": sorted(self.wards), "disabled": self.disabled,
                "password_hash": self.password_hash}


def _checked(username: str, name: str, role: str, wards: Iterable[str]) -> tuple[str, str, frozenset[str]]:
    username, name = username.strip(), " ".join(name.split())
    if not username or len(username) > 64 or any(c.isspace() for c in username):
        raise UserStoreError(f"user name {username!r} must be 1-64 characters without spaces")
    if not name or len(name) > 80:
        raise UserStoreError("display name must be 1-80 characters")
    if role not in ROLES:
        raise UserStoreError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
    ward_set = frozenset(w.strip() for w in wards if w.strip())
    if not ward_set:
        raise UserStoreError("a user needs at least one ward")
    return username, name, ward_set


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_CHARS:
        raise UserStoreError(f"password shorter than {MIN_PASSWORD_CHARS} characters")


class UserStore:
    """Users by user name; ``path`` is where ``save`` writes (None: in memory only)."""

    def __init__(self, users: Iterable[User] = (), path: Path | None = None) -> None:
        self.users: dict[str, User] = {u.username: u for u in users}
        self.path = path

    def __repr__(self) -> str:
        return f"UserStore({len(self.users)} users)"

    def by_id(self, user_id: str) -> User | None:
        return next((u for u in self.users.values() if u.user_id == user_id), None)

    def get(self, username: str) -> User | None:
        return self.users.get(username)

    def verify(self, username: str, password: str) -> User | None:
        """The user if the password is theirs and they are not disabled."""
        user = self.users.get(username)
        try:
            _HASHER.verify(user.password_hash if user else _DUMMY_HASH, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if user is None or user.disabled:
            return None
        return user

    def add(self, username: str, name: str, role: str, wards: Iterable[str], password: str) -> User:
        username, name, ward_set = _checked(username, name, role, wards)
        if username in self.users:
            raise UserStoreError(f"user {username!r} exists")
        check_password(password)
        user = User(f"u-{secrets.token_hex(4)}", username, name, role, ward_set, _HASHER.hash(password))
        self.users[username] = user
        return user

    def update(self, username: str, **changes: Any) -> User:
        """Change a user's ``name``, ``role``, ``wards``, ``disabled`` or ``password``."""
        user = self.users.get(username)
        if user is None:
            raise UserStoreError(f"no user {username!r}")
        if "password" in changes:
            password = changes.pop("password")
            check_password(password)
            changes["password_hash"] = _HASHER.hash(password)
        new = dataclasses.replace(user, **changes)
        _checked(new.username, new.name, new.role, new.wards)
        self.users[username] = new
        return new

    def to_json(self) -> bytes:
        return orjson.dumps({"users": [u.to_dict() for u in self.users.values()]}, option=orjson.OPT_INDENT_2)

    def save(self) -> None:
        """Write the file atomically, readable by its owner only."""
        if self.path is None:
            raise UserStoreError("no user file to save to")
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=".users-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(self.to_json())
            os.chmod(temporary, 0o600)
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    @classmethod
    def from_json(cls, text: bytes | str, path: Path | None = None) -> UserStore:
        try:
            document = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise UserStoreError(f"user file is not valid JSON (line {exc.lineno})") from None
        entries = document.get("users") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise UserStoreError('user file must be {"users": [...]}')
        users = []
        for number, entry in enumerate(entries, start=1):
            try:
                username, name, wards = _checked(entry["username"], entry["name"], entry["role"], entry["wards"])
                users.append(User(str(entry["user_id"]), username, name, entry["role"], wards,
                                  str(entry["password_hash"]), bool(entry.get("disabled", False))))
            except (KeyError, TypeError, AttributeError):
                raise UserStoreError(f"user #{number}: needs user_id, username, name, role, wards, "
                                     "password_hash") from None
            except UserStoreError as exc:
                raise UserStoreError(f"user #{number}: {exc}") from None
        return cls(users, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], missing_ok: bool = False) -> UserStore:
        path = Path(path)
        try:
            return cls.from_json(path.read_bytes(), path)
        except FileNotFoundError:
            if missing_ok:
                return cls(path=path)
            raise UserStoreError(f"no user file at {path} (create one with `vitalstream users add`)") from None
        except OSError as exc:
            raise UserStoreError(f"cannot read user file {path}: {exc.strerror}") from None


class WatchedUsers:
    """The user file as the station sees it: read again when its modification time changes
    (checked at most every ``check_s``), so a disabled user is signed out soon after."""

    def __init__(self, path: str | os.PathLike[str], check_s: float = 2.0) -> None:
        self.path = Path(path)
        self.check_s = check_s
        self._stamp: tuple[int, int] | None = None
        self._checked_s = -1e9
        self.store = UserStore.load(self.path)
        self._stamp = self._stat()

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
            return (st.st_mtime_ns, st.st_size)
        except OSError:
            return None

    def current(self, now_s: float) -> UserStore:
        if now_s - self._checked_s >= self.check_s:
            self._checked_s = now_s
            stamp = self._stat()
            if stamp != self._stamp and stamp is not None:
                try:
                    self.store = UserStore.load(self.path)
                    self._stamp = stamp
                except UserStoreError:
                    pass  # a half-written or broken file: keep the last good one
        return self.store
