"""Shared fixtures: the real broker (tansu) on a free loopback port. Helpers that tests
import live in testkit.py (re-exported here for fixtures)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from testkit import ARTIFACTS, ROOT, SHARED_DATA, missing, require_executable  # noqa: F401

from vitalstream import signing
from vitalstream.broker import EmbeddedBroker
from vitalstream.scoring.model import TEST_CACHE_ENV

# Fresh signing keys for this test run, one per service, in the environment: every Settings()
# of the tests and every worker or station process they start reads the same set (each
# process signs with its own service's key).
os.environ["VITALSTREAM_SIGNING_KEYS"] = signing.keys_json(signing.generate_keys())
os.environ.pop("VITALSTREAM_SIGNING_KEY_ID", None)

# Every worker the tests start (directly, or inside demo, validate, replay) loads the same
# shipped model: its child process's export is kept for this run in a scratch folder
# (vitalstream/scoring/model.py, TEST_CACHE_ENV), so only the first start pays for it.
_MODEL_CACHE = tempfile.mkdtemp(prefix="vitalstream-model-cache-")
atexit.register(shutil.rmtree, _MODEL_CACHE, ignore_errors=True)
os.environ[TEST_CACHE_ENV] = _MODEL_CACHE


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
