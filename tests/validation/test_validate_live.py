"""`vitalstream validate` on the smoke scenario through the real broker and worker: the
report's figures are the alerts and bed states that the stream published."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from vitalstream.broker import EmbeddedBroker
from vitalstream.cli import main
from vitalstream.kafka import consumer
from vitalstream.settings import Settings
from vitalstream.validation.matching import NEW_ALERT_STATUSES

pytestmark = pytest.mark.broker

REQUIRED = ("patients", "patient_days", "events", "events_alerted_1h_before", "median_lead_h",
            "alerts_per_patient_day", "false_alerts_per_patient_day")


async def read_topic(bootstrap: str, topic: str, timeout_s: float = 20.0) -> list[dict[str, Any]]:
    """Every message of a topic, read independently of the validation run."""
    source = consumer(Settings(kafka_bootstrap=bootstrap), topic)
    await source.start()
    values: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + timeout_s
        idle = 0
        while time.monotonic() < deadline and idle < 3:
            batch = await source.getmany(timeout_ms=500)
            records = [r for rs in batch.values() for r in rs]
            idle = 0 if records else idle + 1
            values.extend(orjson.loads(r.value) for r in records)
    finally:
        await source.stop()
    return values


@pytest.fixture(scope="module")
def smoke(module_broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, str]:
    out = tmp_path_factory.mktemp("validate-smoke")
    status = main(["validate", "--scenario", "smoke", "--out", str(out), "--bootstrap",
                   module_broker.bootstrap, "--quiet"])
    assert status == 0
    return orjson.loads((out / "report.json").read_bytes()), out, module_broker.bootstrap


def test_report_has_the_issue_keys_for_the_policy_and_naive_news2(smoke: tuple[dict, Path, str]) -> None:
    report, _, _ = smoke
    for key in REQUIRED:
        assert key in report
        assert key in report["naive_news2_ge5"] or key in ("patients", "patient_days")
        assert key in report["naive_news2_ge7"] or key in ("patients", "patient_days")
    # The smoke scenario: 10 patients, 3 of them deteriorating (simulator labels).
    assert report["patients"] == 10 and report["events"] == 3
    assert report["patients_on_stream"] == 10


def test_every_counted_alert_is_a_message_on_the_alerts_topic(smoke: tuple[dict, Path, str]) -> None:
    report, _, bootstrap = smoke
    on_topic = asyncio.run(read_topic(bootstrap, report["stream"]["topics"]["alerts"]))
    new_clinical = {a["event_id"]: a for a in on_topic
                    if a["kind"] == "clinical" and a["status"] in NEW_ALERT_STATUSES}
    counted = {a["event_id"]: a for a in report["alert_list"]}
    assert counted.keys() == new_clinical.keys()
    assert len(report["alert_list"]) == report["alerts"] > 0
    for event_id, alert in counted.items():
        assert (alert["patient_id"], alert["device_time_ms"], alert["priority"]) == (
            new_clinical[event_id]["patient_id"], new_clinical[event_id]["device_time_ms"],
            new_clinical[event_id]["priority"])


def test_naive_news2_comes_from_the_bed_states_on_the_stream(smoke: tuple[dict, Path, str]) -> None:
    report, _, bootstrap = smoke
    states = asyncio.run(read_topic(bootstrap, report["stream"]["topics"]["bed_state"]))
    assert len(states) == report["stream"]["bed_state_messages"]
    # Each patient whose published NEWS2 ever reached 5 (or 7) was alerted by the naive rule.
    reached5 = {s["patient_id"] for s in states if s["news2"]["total"] >= 5}
    reached7 = {s["patient_id"] for s in states if s["news2"]["total"] >= 7}
    assert report["naive_news2_ge5"]["patients_alerted"] == len(reached5)
    assert report["naive_news2_ge7"]["patients_alerted"] == len(reached7)
    assert report["naive_news2_ge5"]["alerts"] >= len(reached5)


def test_figures_are_consistent(smoke: tuple[dict, Path, str]) -> None:
    report, _, _ = smoke
    for block in (report, report["naive_news2_ge5"], report["naive_news2_ge7"]):
        assert 0 <= block["events_alerted_1h_before"] <= block["events_alerted_before_event"] <= block["events"]
        assert block["true_alerts"] + block["false_alerts"] + block["after_event_alerts"] == block["alerts"]
        assert sum(block["alerts_by_priority"].values()) == block["alerts"]
        assert block["alerts_per_patient_day"] * report["patient_days"] == pytest.approx(block["alerts"], rel=1e-3)
        assert len(block["missed_events"]) == block["events"] - block["events_alerted_1h_before"]
        if block["median_lead_h"] is not None:
            assert 0 <= block["median_lead_h"] <= 24
    # Nothing lost silently: every sample sent was scored by the worker.
    stream = report["stream"]
    assert stream["worker"]["samples_processed"] == stream["replay"]["samples"] > 0


def test_html_report_shows_the_figures_and_its_plots(smoke: tuple[dict, Path, str]) -> None:
    report, out, _ = smoke
    page = (out / "report.html").read_text()
    assert "naive NEWS2 &gt;= 5" in page and "median lead" in page
    pngs = ["alert_burden.png", "lead_times.png", *(t["png"] for t in report["timelines"])]
    assert report["timelines"], "a few patients' timelines are plotted"
    for png in pngs:
        assert f"src='{png}'" in page
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_says_first_that_the_patients_are_simulated_and_what_made_it(
        smoke: tuple[dict, Path, str]) -> None:
    report, out, _ = smoke
    made = report["provenance"]
    assert report["simulated"] is True and made["seed"] == 7  # the smoke scenario's seed
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", made["date"])
    assert re.fullmatch(r"[0-9a-f]{12}( \+ local changes)?", made["commit"]), made["commit"]
    assert re.fullmatch(r"PolicyConfig defaults, sha256 [0-9a-f]{12}", made["policy_version"])
    assert made["model_versions"], "the shipped risk model scored the stream; its alerts say which"
    page = (out / "report.html").read_text()
    top = page[:page.index("<h2>Headline")]
    assert "Simulated patients." in top and "seed 7" in top
    for value in (made["date"], made["commit"], made["policy_version"], *made["model_versions"]):
        assert value in top
    # The comparison is discussed in words, and the run is a table, not a JSON dump.
    assert "NEWS2 &gt;= 7 is the fairer comparison" in page and "alerts buy: " in page
    assert "<pre>" not in page and "<th>samples sent</th>" in page


@pytest.mark.parametrize("argv, message", [
    (["--scenario", "nope"], "unknown scenario"),
    (["--source", "/nonexistent/recording.ndjson"], "no such file"),
    (["--scenario", "smoke", "--speed", "0"], "--speed must be positive"),
])
def test_usage_errors_are_one_line_with_status_2(argv: list[str], message: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", *argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_physionet_recording_in_hl7_is_judged_against_its_sepsis_labels(
        module_broker: EmbeddedBroker, tmp_path: Path) -> None:
    from vitalstream.training.physionet import SAMPLE_DIR

    # The shipped sample's first 6 stays include septic ones (SepsisLabel = 1 rows).
    status = main(["validate", "--source", str(SAMPLE_DIR), "--patients", "6", "--format", "hl7",
                   "--out", str(tmp_path), "--bootstrap", module_broker.bootstrap, "--quiet"])
    assert status == 0
    report = orjson.loads((tmp_path / "report.json").read_bytes())
    assert report["source"]["kind"] == "physionet2019" and report["labelled"]
    assert report["patients"] == 6 and report["events"] >= 1
    # HL7 carries every vital sign the .psv rows have: nothing was lost on the way.
    assert report["stream"]["replay"]["skipped_samples"] == 0
    assert report["stream"]["worker"]["samples_processed"] == report["stream"]["replay"]["samples"]
    assert report["stream"]["worker"]["messages_deadlettered"] == 0
