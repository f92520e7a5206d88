"""Silent mode on the simulated ward, on the real broker: a shadow policy with other
thresholds, run beside the live one, gives the figures of running that policy live; its
alerts never reach the alerts topic; a shadow the worker cannot run stops it at start with
one readable line. Then the accuracy audit of the same run against the simulator's outcomes."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from governance.govkit import metric, run, send

from simulators.cohort import generate_cohort
from vitalstream.broker import EmbeddedBroker
from vitalstream.cli import main
from vitalstream.kafka import ensure_topics
from vitalstream.process import WorkerProcess
from vitalstream.replay.producer import encode_report
from vitalstream.settings import Settings

pytestmark = [pytest.mark.governance, pytest.mark.broker]

CANDIDATE = {"news2_medium": 4, "news2_high": 6, "single_parameter_alerts": False}
NEW = ("raised", "escalated", "reraised")


def ward(start_ms: int):
    cohort = generate_cohort(12, 8.0, seed=11, deteriorating_fraction=0.34, start_ms=start_ms,
                             device_mix={"monitor": 0.6, "patch": 0.4})
    messages, samples = [], 0
    for index, report in enumerate(cohort.reports()):
        raw, left_out = encode_report(report, "json", index + 1)
        if raw is not None:
            messages.append((report[0].patient_id.encode(), raw))
            samples += len(report) - left_out
    return cohort, messages, samples


def outcomes_csv(cohort, path: Path) -> None:
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["patient_id", "kind", "time", "ward", "age_years", "sex"])
        for p in cohort.patients:
            sex = {"F": "female", "M": "male"}[p.sex]
            out.writerow([p.patient_id, "rapid_response" if p.event_ms else "", p.event_ms or "", p.ward,
                          p.age_years, sex])
        out.writerow(["p-unknown", "nap", "soon", "", "", ""])  # refused: its reason is reported


def replay(runs: list[tuple[EmbeddedBroker, dict[str, str], Path]], messages, samples: int) -> None:
    """The ward through one worker per (broker, environment, log), the workers side by side
    (each on its own broker): their start-up waits overlap."""
    workers = []
    try:
        for broker, env, log in runs:
            run(ensure_topics(Settings(kafka_bootstrap=broker.bootstrap)))
            worker = WorkerProcess(broker.bootstrap, env=env, log_path=log)
            with log.open("ab") as out:  # WorkerProcess.start without its wait for /ready
                worker.process = subprocess.Popen(worker.command(), env=worker.environment(), stdout=out,
                                                  stderr=subprocess.STDOUT, start_new_session=True)
            workers.append(worker)
        for worker in workers:
            worker.wait_ready(worker.ready_timeout_s)
        for broker, _, _ in runs:
            settings = Settings(kafka_bootstrap=broker.bootstrap)
            run(send(settings, settings.topic_raw, messages))
        deadline = time.monotonic() + 120
        for worker in workers:
            while metric(worker, "vitalstream_samples_processed_total") < samples:
                assert time.monotonic() < deadline, "the worker did not score the whole ward"
                time.sleep(0.5)
        time.sleep(1.0)  # the last batch's writes
    finally:
        for worker in workers:
            worker.stop()


def cli_json(capsys, *argv: str) -> dict:
    assert main(list(argv)) == 0
    out = capsys.readouterr().out
    return orjson.loads(Path(argv[argv.index("--out") + 1], "report.json").read_bytes()), out


def new_alerts(settings: Settings, topic: str) -> set[tuple]:
    from vitalstream.commands.compare import read_stream

    return {(a["alert_id"], a["status"], a["device_time_ms"]) for a in run(read_stream(settings, topic))[topic]
            if a["kind"] == "clinical" and a["status"] in NEW}


@pytest.mark.timeout(300)
def test_a_shadow_policy_gives_the_figures_of_running_it_live(tmp_path: Path, capsys) -> None:
    start_ms = int(time.time() * 1000) - 9 * 3_600_000
    cohort, messages, samples = ward(start_ms)
    outcomes = tmp_path / "outcomes.csv"
    outcomes_csv(cohort, outcomes)
    window = ["--since", str(start_ms), "--until", str(start_ms + 9 * 3_600_000), "--outcomes", str(outcomes)]
    with EmbeddedBroker(log_path=tmp_path / "tansu-shadow.log") as shadow_broker, \
            EmbeddedBroker(log_path=tmp_path / "tansu-live.log") as live_broker:
        replay([(shadow_broker, {"VITALSTREAM_SHADOW": orjson.dumps({"policy": CANDIDATE}).decode()},
                 tmp_path / "worker-shadow.log"),
                (live_broker, {"VITALSTREAM_POLICY": orjson.dumps(CANDIDATE).decode()},
                 tmp_path / "worker-live.log")], messages, samples)
        with_shadow, printed = cli_json(capsys, "compare", "--bootstrap", shadow_broker.bootstrap, *window,
                                        "--out", str(tmp_path / "with-shadow"))
        as_live, _ = cli_json(capsys, "compare", "--bootstrap", live_broker.bootstrap, *window,
                              "--out", str(tmp_path / "as-live"))
        shadow_settings = Settings(kafka_bootstrap=shadow_broker.bootstrap)
        live_settings = Settings(kafka_bootstrap=live_broker.bootstrap)
        shadow_alerts = new_alerts(shadow_settings, shadow_settings.topic_alerts_shadow)
        live_alerts = new_alerts(live_settings, live_settings.topic_alerts)
        default_alerts = new_alerts(shadow_settings, shadow_settings.topic_alerts)
        # The accuracy audit of the live run (the candidate policy) against the same outcomes.
        report, _ = cli_json(capsys, "audit-accuracy", "--bootstrap", live_broker.bootstrap, *window,
                             "--out", str(tmp_path / "accuracy"))

    assert shadow_alerts, "the candidate raised nothing on a ward with deteriorating patients"
    assert shadow_alerts == live_alerts, "the shadow decided otherwise than the same policy live"
    assert shadow_alerts != default_alerts, "the candidate's thresholds made no difference"
    assert not {a[0] for a in shadow_alerts} - {a[0] for a in live_alerts}
    assert with_shadow["scopes"].keys() == as_live["scopes"].keys()
    assert {"all", "ward 4B", "ward 5A", "sex female", "sex male"} <= set(with_shadow["scopes"])
    for scope, figures in with_shadow["scopes"].items():
        assert figures["shadow"] == as_live["scopes"][scope]["live"], scope
    every = with_shadow["scopes"]["all"]
    assert every["shadow"]["events"] == sum(1 for p in cohort.patients if p.event_ms)
    # (The simulated physiology follows the time of day, so the figures change from run to
    # run with the start time; within a run, each report counts its own topic's alerts.)
    assert every["shadow"]["alerts"] == len(shadow_alerts) and every["live"]["alerts"] == len(default_alerts)
    assert every["overlap"]["both"] >= 1 and every["overlap"]["shadow_only"] >= 1
    assert with_shadow["outcome_rows_refused"] == {"unknown kind nap": 1}
    assert "outcome refused (line 14): unknown kind nap" in printed
    page = (tmp_path / "with-shadow" / "report.html").read_text()
    assert "data:image/png;base64," in page and "ward 4B" in page

    every = report["scopes"]["all"]
    assert every["events"] == as_live["scopes"]["all"]["live"]["events"]
    assert every["sensitivity_1h"] == as_live["scopes"]["all"]["live"]["sensitivity_1h"]
    low, high = every["ppv_ci95"]
    assert low <= every["ppv"] <= high and 0 <= low < high <= 1
    low, high = every["alerts_per_patient_day_ci95"]
    assert low <= every["alerts_per_patient_day"] <= high
    assert {"age 65-79", "sex female", "ward 4B"} <= set(report["scopes"])


@pytest.mark.timeout(120)
def test_a_shadow_model_version_the_worker_does_not_have_stops_it_at_start_with_one_line(
        broker: EmbeddedBroker) -> None:
    """(The other refusals, of the same function, are in test_shadow_config.py.)"""
    shadow = {"model_version": "sepsis-vitals-0+0000000000"}
    line = "shadow model version 'sepsis-vitals-0+0000000000' is not a model in"
    env = {**os.environ, "VITALSTREAM_KAFKA_BOOTSTRAP": broker.bootstrap, "VITALSTREAM_SHADOW": orjson.dumps(shadow).decode()}
    done = subprocess.run([sys.executable, "-m", "vitalstream", "worker"], env=env, capture_output=True, text=True,
                          timeout=100)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vitalstream worker: ") and line in lines[0], done.stderr
