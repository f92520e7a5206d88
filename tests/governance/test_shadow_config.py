"""What a shadow configuration may say, and the shadow's decisions on assessments,
without a broker."""

from __future__ import annotations

import types

import pytest

from vitalstream.alerts import AlertPolicy, Assessment, PolicyConfig
from vitalstream.governance.shadow import (
    Shadow,
    ShadowConfig,
    ShadowConfigError,
    load_shadow,
)
from vitalstream.scoring.news2 import news2

pytestmark = pytest.mark.governance

LIVE_MODEL = types.SimpleNamespace(version="sepsis-vitals-1+abc")


@pytest.mark.parametrize(("text", "reason"), [
    ("{", "not JSON"),
    ("[]", "must be"),
    ('{"polcy": {}}', "unknown key(s) polcy"),
    ('{"policy": {"news2_mediun": 4}}', "unknown policy field(s): news2_mediun"),
    ('{"policy": {"news2_medium": "4"}}', "policy field news2_medium must be like 5"),
    ('{"policy": {"single_parameter_alerts": 1}}', "single_parameter_alerts must be like True"),
    ('{"policy": {"news2_medium": 8}}', "news2_medium must not be above news2_high"),
    ('{"model_version": 3}', "model_version must be a string"),
])
def test_a_shadow_configuration_that_cannot_run_is_refused_with_its_reason(text: str, reason: str, tmp_path) -> None:
    with pytest.raises(ShadowConfigError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        load_shadow(text, PolicyConfig(), LIVE_MODEL, models_dir=tmp_path)


def test_an_unknown_model_version_names_the_ones_there_are(tmp_path) -> None:
    with pytest.raises(ShadowConfigError) as caught:
        load_shadow('{"model_version": "sepsis-vitals-9"}', PolicyConfig(), LIVE_MODEL, models_dir=tmp_path)
    assert "'sepsis-vitals-9' is not a model in" in str(caught.value)
    assert "available: sepsis-vitals-1+abc" in str(caught.value)


def test_the_live_model_version_needs_no_second_model_and_an_empty_setting_no_shadow(tmp_path) -> None:
    assert load_shadow("", PolicyConfig(), LIVE_MODEL) is None
    config = load_shadow('{"model_version": "sepsis-vitals-1+abc", "policy": {"news2_medium": 4}}',
                         PolicyConfig(), LIVE_MODEL, models_dir=tmp_path)
    assert config.model is None and config.policy.news2_medium == 4 and config.policy.news2_high == 7
    assert config.version != ShadowConfig(PolicyConfig()).version


def at(t_s: int, rr: float) -> Assessment:
    obs = {"resp_rate": (rr, t_s * 1000), "spo2": (97.0, 0), "on_oxygen": (False, 0), "systolic_bp": (120.0, 0),
           "heart_rate": (80.0, 0), "consciousness": ("A", 0), "temperature": (37.0, 0)}
    return Assessment("p1", "4B", "12", t_s * 1000, news2({k: v for k, (v, _) in obs.items()}), obs, {})


def test_the_shadow_decides_as_its_policy_would_on_the_same_assessments() -> None:
    """RR 26 scores 3 (NEWS2 3), measured again: a single-parameter (low) alert for the
    live policy and for a shadow of the same configuration, under the same id; a candidate
    with single-parameter alerts off and medium at 3 raises a medium alert instead."""
    assessments = [at(t, 26.0) for t in range(0, 900, 60)]
    live_policy = AlertPolicy()
    state = live_policy.new_state()
    live = [a for x in assessments for a in live_policy.assess(state, x)]
    same = Shadow(ShadowConfig(PolicyConfig()), "alerts.shadow")
    assert [(a.alert_id, a.status) for a in same.assess(assessments)] == [(a.alert_id, a.status) for a in live]
    other = Shadow(ShadowConfig(PolicyConfig(news2_medium=3, single_parameter_alerts=False)), "alerts.shadow")
    raised = other.assess(assessments)
    assert [a.priority for a in raised] == ["medium"] and [a.priority for a in live] == ["low"]
    topic, key, value, partition = other.writes(raised)[0]
    assert topic == "alerts.shadow" and key == b"4B" and b'"shadow":{"policy_version":"pol-' in value
