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
