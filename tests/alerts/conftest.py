"""The ``patient`` fixture: a fresh synthetic patient (see alerts_synthetic.py)."""

from __future__ import annotations

import pytest
from alerts_synthetic import Patient


@pytest.fixture
def patient() -> Patient:
    return Patient()
