"""Replay of recorded or simulated patients into ``vitals.raw``.

`readers` turn NDJSON, CSV and PhysioNet 2019/2012 files into a columnar `Recording`;
`producer` sends device reports at a speed factor over real time. The simulator's
`Cohort.reports()` and `Recording.reports()` give the same thing: lists of samples, one
per (device time, patient, device), in device-time order.
"""

from vitalstream.replay.producer import (
    Pacer,
    ReplayStats,
    encode_report,
    limit_samples,
    replay,
    shift_to,
)
from vitalstream.replay.readers import SourceError, read_path, sniff_kind
from vitalstream.replay.recording import Recording, RecordingBuilder

__all__ = ["Pacer", "Recording", "RecordingBuilder", "ReplayStats", "SourceError", "encode_report",
           "limit_samples", "read_path", "replay", "shift_to", "sniff_kind"]
