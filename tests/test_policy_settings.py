"""The ward alert policy as a setting (VITALSTREAM_POLICY): bounded, documented, and the
policy the worker builds."""

from __future__ import annotations

import dataclasses

import pytest

from vitalstream.alerts import PolicyConfig
from vitalstream.cli import main
from vitalstream.commands.config import reference_markdown
from vitalstream.policy_settings import POLICY_BOUNDS, PolicySettingsError, policy_config
from vitalstream.settings import Settings


def test_every_policy_field_has_bounds_and_a_row_in_the_reference() -> None:
    # A field added to PolicyConfig without bounds here would be configurable unchecked.
    fields = [f.name for f in dataclasses.fields(PolicyConfig)]
    assert sorted(POLICY_BOUNDS) == sorted(fields)
    reference = reference_markdown()
    for name in fields:
        assert f"| `{name}` |" in reference, name


@pytest.mark.parametrize(("overrides", "reason"), [
    ('{"news2_high": 30}', "news2_high must be between 1 and 20"),  # NEWS2 totals stop at 20
    ('{"news2_medium": 0}', "news2_medium must be between 1 and 20"),  # 0 would alert on every patient
    ('{"news2_medium": 4.5}', "news2_medium must be an integer"),
    ('{"persistence_s": {"high": -1}}', "persistence_s.high must be between 0 and 3600"),
    ('{"persistence_s": {"urgent": 60}}', "persistence_s: unknown key(s) urgent"),
    ('{"risk_thresholds": {"medium": 1.5}}', "risk_thresholds.medium must be between 0 and 1"),
    ('{"stale_after_s": {"bedside": {"spo2": 1}}}', "stale_after_s.bedside.spo2 must be between 10"),
    ('{"technical_priority": "urgent"}', "technical_priority must be one of low, medium, high"),
    ('{"display_tz": "Mars/Olympus"}', "unknown time zone"),
    ('{"resolve_margin": 5}', "resolve_margin must be below news2_medium"),
    ('{"news2_medium": 8}', "news2_medium must not be above news2_high"),
    ('{"news2_mediun": 4}', "unknown policy field(s): news2_mediun"),
    ("[4]", "must be a JSON object"),
])
def test_a_policy_out_of_bounds_is_refused_naming_the_field(overrides: str, reason: str) -> None:
    with pytest.raises(PolicySettingsError) as caught:
        policy_config(overrides)
    assert reason in str(caught.value)


def test_a_mapping_field_changes_only_the_keys_given() -> None:
    config = policy_config('{"persistence_s": {"high": 30}, "stale_after_s": {"wearable": {"spo2": 600}}}')
    assert dict(config.persistence_s) == {"high": 30, "medium": 120, "low": 300}
    assert config.stale_after_s["wearable"] == {"heart_rate": 900, "resp_rate": 900, "spo2": 600}
    assert config.stale_after_s["bedside"] == PolicyConfig().stale_after_s["bedside"]


def test_the_settings_carry_the_policy_the_worker_builds(monkeypatch) -> None:
    from vitalstream import app

    monkeypatch.setenv("VITALSTREAM_POLICY", '{"news2_medium": 4, "single_parameter_alerts": false}')
    settings = Settings(kafka_bootstrap="127.0.0.1:1")
    assert settings.policy_config().news2_medium == 4
    monkeypatch.setattr("vitalstream.features.FeatureEngine", lambda: (_ for _ in ()).throw(ImportError()))
    monitor = app.build_monitor(settings)  # NEWS2 only: no engine, so no model is loaded
    assert monitor.policy.config.news2_medium == 4 and not monitor.policy.config.single_parameter_alerts


def test_vitalstream_config_refuses_a_policy_out_of_bounds_in_one_line(monkeypatch, capsys) -> None:
    monkeypatch.setenv("VITALSTREAM_POLICY", '{"worse_points": 0}')
    assert main(["config"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "VITALSTREAM_POLICY" in err and "worse_points" in err
