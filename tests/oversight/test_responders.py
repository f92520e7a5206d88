"""The responder model of the validation report, through the real desk and chain."""

from __future__ import annotations

import pytest

from vitalstream.oversight import OversightConfig
from vitalstream.oversight.responders import ResponderModel, simulate

pytestmark = pytest.mark.oversight


def alerts(n: int, priority: str = "high") -> list[dict]:
    return [{"event_id": f"a{i}/raised", "alert_id": f"a{i}", "patient_id": f"p{i}", "ward": "4B", "bed": "1",
             "kind": "clinical", "priority": priority, "device_time_ms": i * 3_600_000} for i in range(n)]


def test_nobody_responding_sends_every_alert_up_the_chain() -> None:
    figures = simulate(alerts(20), {}, OversightConfig.default(), ResponderModel(p_respond=0.0))
    assert figures["escalations_by_step"] == {"charge_nurse (no_acknowledgement)": 20,
                                              "rapid_response (no_acknowledgement)": 20}
    assert figures["time_to_acknowledge"]["high"]["median_s"] >= 120 + 300, "acknowledged only after both calls"


def test_prompt_nurses_escalate_rarely_and_answers_follow_the_verdicts() -> None:
    verdicts = {f"a{i}/raised": "true" if i % 2 else "false" for i in range(40)}
    figures = simulate(alerts(40), verdicts, OversightConfig.default(),
                       ResponderModel(p_respond=1.0, mean_ack_s={"high": 10, "medium": 10, "low": 10}))
    steps = figures["escalations_by_step"]
    assert not [s for s in steps if "no_acknowledgement" in s], "a 10 s mean does not reach the 120 s step"
    # An answer comes after 5 min on average: a few take longer than the 15 min allowed.
    assert 0 < steps.get("charge_nurse (unanswered)", 0) < 10
    assert figures["answers_by_reason"] == {"expected_or_known": 20, "physician_informed": 20}
    assert figures["time_to_acknowledge"]["high"]["n"] == 40
    assert figures["time_to_acknowledge"]["high"]["median_s"] < 30


def test_same_alerts_give_the_same_figures() -> None:
    assert simulate(alerts(10), {}) == simulate(alerts(10), {})
    assert simulate(alerts(10), {})["time_to_acknowledge"]["high"] == \
        simulate(alerts(10)[::-1], {})["time_to_acknowledge"]["high"], "each alert draws on its own"
