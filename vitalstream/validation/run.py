"""One validation run end to end: open a scenario or a recording with its labels, push it
through the live pipeline, and write the report from what the stream produced."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from vitalstream.samples import Sample
from vitalstream.settings import Settings
from vitalstream.validation.labels import Labels, labels_for_recording


@dataclasses.dataclass(slots=True)
class Replayable:
    """What to replay and what to judge it against."""

    reports: Iterable[list[Sample]]
    labels: Labels
    source: dict[str, Any]
    samples: int | None = None


def open_scenario(name: str) -> Replayable:
    """A simulated scenario with the simulator's labels; KeyError names the known ones."""
    from simulators import scenario

    recipe = scenario(name)
    cohort = recipe.cohort()
    labels = Labels.from_cohort_dict(cohort.to_dict(), source=f"scenario {name}")
    return Replayable(cohort.reports(), labels, {
        "kind": "scenario", "name": name, "description": recipe.description, "seed": recipe.seed,
        "hours": recipe.hours})


def open_recording(path: Path, max_stays: int | None = None) -> Replayable:
    """A recording (NDJSON, CSV, PhysioNet 2019/2012); labels from the files when they
    have them. Raises FileNotFoundError or `SourceError`."""
    from vitalstream.replay import read_path, sniff_kind
    from vitalstream.replay.readers import RECORDING_START_MS

    recording = read_path(path, start_ms=RECORDING_START_MS, max_stays=max_stays)
    kind = sniff_kind(path)
    labels = labels_for_recording(path, recording, kind, RECORDING_START_MS, max_stays)
    description = f"recording {path.name} ({kind}, {len(recording.patient_ids)} stays)"
    return Replayable(recording.reports(), labels, {"kind": kind, "path": str(path), "description": description},
                      samples=len(recording))


def validate(replayable: Replayable, out_dir: Path, settings: Settings | None = None, fmt: str = "json",
             speed: float | None = None, progress: bool = False) -> dict[str, Any]:
    """Replay through the live pipeline, write ``out_dir/report.json``, ``report.html`` and
    PNGs, and return the report."""
    from vitalstream.validation.live import run_pipeline
    from vitalstream.validation.report import build_report, write_report

    started = time.monotonic()
    run = run_pipeline(replayable.reports, settings or Settings(), out_dir, fmt=fmt, speed=speed,
                       progress=progress, total=replayable.samples)
    facts = run.to_dict()
    facts["format"] = fmt
    facts["speed"] = speed
    # Broker and worker start, replay, drain and collection; not the rendering below.
    facts["run_s"] = round(time.monotonic() - started, 1)
    report = build_report(replayable.labels, run.collector, facts, replayable.source)
    write_report(report, replayable.labels, run.collector, out_dir)
    return report
