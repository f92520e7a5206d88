"""The report's words about the naive comparisons come from its figures, and its header
and run table read without the pipeline (the live test covers them on a real run)."""

from __future__ import annotations

from vitalstream.validation.report import comparison_paragraphs, header_html, run_rows


def block(alerts, caught, lead, false, ppv, by_priority=None):
    return {"alerts_per_patient_day": alerts, "events": 25, "events_alerted_1h_before": caught,
            "median_lead_h": lead, "false_alerts_per_patient_day": false, "ppv": ppv,
            "alerts_per_patient_day_by_priority": by_priority or {"high": alerts, "medium": 0.0, "low": 0.0}}


# The default ward as the README reports it (policy, naive NEWS2 >= 5, naive NEWS2 >= 7).
WARD = {**block(0.62, 25, 5.4, 0.45, 0.26, {"high": 0.2, "medium": 0.3, "low": 0.12}),
        "naive_news2_ge5": block(7.00, 25, 11.8, 5.05, 0.28),
        "naive_news2_ge7": block(1.51, 22, 4.1, 0.42, 0.71),
        "alert_list": [{"verdict": "false", "priority": p} for p in ["medium"] * 100 + ["low"] * 50 + ["high"] * 21]
        + [{"verdict": "true", "priority": "high"}] * 60}


def test_the_ward_comparison_says_what_the_policy_buys_against_news2_ge7():
    against5, against7, buys = comparison_paragraphs(WARD)
    assert against5.startswith("Against alerting at every rise of NEWS2 to 5 or more, the policy sends 91 % fewer")
    # 0.45 against 0.42: within a quarter of each other.
    assert "about the same false-alert rate as it (0.45 against 0.42 per patient-day), at a PPV of 0.26 against 0.71" in against7
    assert "Of the policy's 171 false alerts, 150 were medium or low" in against7
    assert buys.startswith("What the policy's alerts buy: 25 of 25 events alerted at least 1 h before, against 22, "
                           "with a median lead of 5.40 h against 4.10 h: 3 more of the patients")
    assert "fewer alerts than NEWS2 >= 7: 0.62 per patient-day against 1.51" in buys


def test_a_policy_that_buys_nothing_is_not_praised():
    report = {**WARD, **block(2.0, 20, 3.0, 1.5, 0.2), "alert_list": []}
    _, against7, buys = comparison_paragraphs(report)
    assert "more false alerts than it (1.50 against 0.42" in against7
    assert "no earlier warning than NEWS2 >= 7 on these patients" in buys
    assert "The price is more alerts: 2.00 per patient-day against 1.51" in buys


def test_header_says_simulated_or_recorded_with_what_made_the_figures():
    made = {"date": "2026-12-03 13:44 UTC", "commit": "0123456789ab", "vitalstream_version": "0.1.0",
            "policy_version": "PolicyConfig defaults, sha256 e80b00967369", "model_versions": ["m-1"], "seed": 2026}
    simulated = "".join(header_html({"simulated": True, "provenance": made, "source": {"name": "ward"}}))
    assert "Simulated patients." in simulated and "scenario ward, seed 2026" in simulated
    for value in ("2026-12-03 13:44 UTC", "0123456789ab", "m-1", "e80b00967369", "<th>scenario seed</th><td class='l'>2026"):
        assert value in simulated
    recorded = "".join(header_html({"simulated": False, "source": {"path": "/d/set-a", "kind": "physionet2019"},
                                    "provenance": {**made, "model_versions": [], "seed": None}}))
    assert "Recorded patients" in recorded and "Simulated" not in recorded and "seed" not in recorded
    assert "none: no alert carried a risk (NEWS2 only)" in recorded


def test_run_table_names_every_fact_once():
    stream = {"run_s": 63.0, "feed_s": 40.1, "drain_s": 9.0, "format": "json", "speed": None,
              "replay": {"samples": 10, "messages": 5, "first_device_ms": 1773532800000},
              "worker": {"samples_processed": 10}, "topics": {"raw": "vitals.raw"}, "alert_messages": 3}
    rows = dict(run_rows(stream))
    assert rows["whole run (broker and worker start, replay, drain), s"] == 63.0
    assert rows["speed (none: as fast as possible)"] is None
    assert rows["samples sent"] == 10 and rows["worker: samples processed"] == 10
    assert rows["replay: first device"] == "2026-03-15 00:00:00 UTC"
    assert len(rows) == len(run_rows(stream))  # no label twice
