"""The monitor stage's stream clock: device time, but never ahead of the wall clock."""

from __future__ import annotations

import pytest

from vitalstream.monitor_stage import StreamClock

pytestmark = pytest.mark.security

WALL_MS = 1_780_000_000_000


def test_a_device_ahead_of_the_wall_clock_does_not_move_the_partition_clock() -> None:
    # One patient's device an hour fast must not make the other patients of the partition
    # look an hour silent ("no data" after 5 min for a bedside monitor).
    clock = StreamClock()
    clock.observe(WALL_MS - 60_000, WALL_MS)
    clock.observe(WALL_MS + 3_600_000, WALL_MS)
    assert WALL_MS <= clock.now_ms() < WALL_MS + 60_000


def test_a_replay_in_the_past_is_followed_as_before() -> None:
    # A fast replay of a 2026-03 recording: the clock follows the recording, not the wall.
    clock = StreamClock()
    clock.observe(1_773_532_800_000, WALL_MS)
    clock.observe(1_773_536_400_000, WALL_MS)
    assert 1_773_536_400_000 <= clock.now_ms() < 1_773_536_400_000 + 60_000
