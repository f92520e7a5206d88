"""The governance alert rules, checked and unit-tested by promtool; every alert has a
unit test that sees it fire."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from testkit import require_executable

pytestmark = pytest.mark.governance

PROMETHEUS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = PROMETHEUS / "rules" / "governance.yml"
TESTS = PROMETHEUS / "tests" / "governance_test.yml"


def promtool(*args: str | Path) -> str:
    import subprocess

    done = subprocess.run([require_executable("promtool"), *map(str, args)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_promtool_accepts_the_governance_rules() -> None:
    assert "SUCCESS: 5 rules found" in promtool("check", "rules", RULES)


def test_the_rule_unit_tests_pass() -> None:
    assert "SUCCESS" in promtool("test", "rules", TESTS)


def test_every_governance_alert_is_seen_firing_and_seen_quiet_in_a_unit_test() -> None:
    alerts = {rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"]
              for rule in group["rules"] if "alert" in rule}
    assert alerts == {"VitalstreamAlertRateDoubled", "VitalstreamInputDrift", "VitalstreamFalseAlarmShareHigh"}
    cases = [case for test in yaml.safe_load(TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    assert {c["alertname"] for c in cases if c["exp_alerts"]} == alerts
    assert {c["alertname"] for c in cases if not c["exp_alerts"]} == alerts


def test_the_psi_rule_fires_above_a_quarter() -> None:
    rule = next(rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
                if rule.get("alert") == "VitalstreamInputDrift")
    assert "> 0.25" in rule["expr"]
