"""Helpers shared by the tests: where the PhysioNet data are, and the rule that a test
whose real component is missing may skip on a laptop but fails under CI=true.

Import as ``from testkit import missing`` (pytest puts tests/ on sys.path)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("VITALSTREAM_DATA_DIR", ROOT.parent / "shared" / "data"))
ARTIFACTS = ROOT / "test-artifacts"


def missing(reason: str) -> None:
    """Skip for a missing real component; under CI=true that is a failure."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"required under CI: {reason}")
    pytest.skip(reason)


def require_executable(name: str, *alternatives: str) -> str:
    for candidate in (name, *alternatives):
        path = shutil.which(candidate)
        if path:
            return path
    missing(f"{name} is not installed (make system-deps installs it)")
    raise AssertionError("unreachable")


async def send_all(settings: Any, messages: list[bytes], topic: str | None = None) -> None:
    """Publish raw messages (to vitals.raw unless ``topic``) and wait until they are sent."""
    from vitalstream.kafka import producer

    out = producer(settings)
    await out.start()
    try:
        for message in messages:
            await out.send(topic or settings.topic_raw, message)
        await out.flush()
    finally:
        await out.stop()


def keyring(service: str | None = None) -> Any:
    """This test run's signing keys (set by conftest), signing as ``service``."""
    from vitalstream.signing import Keyring

    ring = Keyring.from_json(os.environ["VITALSTREAM_SIGNING_KEYS"])
    return ring.for_service(service) if service else ring


async def send_signed(settings: Any, topic: str, key: bytes | None, value: bytes,
                      service: str | None = "station") -> None:
    """Publish one record signed with ``service``'s key (None: unsigned, as a forger would)."""
    from vitalstream.kafka import producer

    headers = keyring(service).sign(topic, key, value) if service else None
    out = producer(settings)
    await out.start()
    try:
        await out.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await out.stop()


def actor(role: str = "bedside_nurse", name: str = "Anna Smith", user_id: str = "u-anna") -> dict[str, str]:
    """The signed-in user an acknowledgement or settings record carries."""
    return {"user_id": user_id, "role": role, "name": name}


PASSWORD = "correct horse battery staple"


def make_users(path: Any, *users: tuple[str, str, str, list[str]]) -> Any:
    """A user file with (username, display name, role, wards) users, all with ``PASSWORD``;
    the store (for user ids)."""
    from vitalstream.auth.users import UserStore

    store = UserStore(path=path)
    for username, name, role, wards in users:
        store.add(username, name, role, wards, PASSWORD)
    store.save()
    return store


async def sign_in(client: Any, url: str, username: str, password: str = PASSWORD) -> int:
    """POST /session as a browser form from the station's own origin; the status of the
    answer (303 on success, the cookie then in ``client``'s jar)."""
    async with client.post(f"{url}/session", data={"username": username, "password": password},
                           headers={"Origin": url}, allow_redirects=False) as response:
        return response.status


def browser() -> Any:
    """An aiohttp client that keeps cookies for 127.0.0.1 (the default jar drops them for
    IP addresses), as a browser does."""
    import aiohttp

    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
