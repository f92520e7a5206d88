"""Shared fixtures: the real broker (tansu) on a free loopback port. Helpers that tests
import live in testkit.py (re-exported here for fixtures)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from testkit import ARTIFACTS, ROOT, SHARED_DATA, missing, require_executable  # noqa: F401

from vitalstream import signing
from vitalstream.broker import EmbeddedBroker

# Fresh signing keys for this test run, one per service, in the environment: every Settings()
# of the tests and every worker or station process they start reads the same set (each
# process signs with its own service's key).
os.environ["VITALSTREAM_SIGNING_KEYS"] = signing.keys_json(signing.generate_keys())
os.environ.pop("VITALSTREAM_SIGNING_KEY_ID", None)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A fresh tansu broker for one test, stopped afterwards."""
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as running:
        yield running


@pytest.fixture(scope="module")
def module_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One tansu broker shared by the tests of a module (topics must not collide)."""
    log = tmp_path_factory.mktemp("tansu") / "tansu.log"
    with EmbeddedBroker(log_path=log) as running:
        yield running


@pytest.fixture
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
