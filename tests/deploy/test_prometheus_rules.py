"""Prometheus configuration, alert rules and the Grafana dashboard, checked with Debian's
promtool, and every metric they name compared with what running processes export."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest
import yaml
from testkit import require_executable, send_all, send_signed

from vitalstream.broker import EmbeddedBroker, free_port
from vitalstream.kafka import ensure_topics
from vitalstream.process import WorkerProcess
from vitalstream.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "rules" / "vitalstream.yml"
# Every rule file Prometheus loads (rules/*.yml) and every promtool unit-test file.
RULE_FILES = sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))
RULE_TESTS = sorted((DEPLOY / "prometheus" / "tests").glob("*_test.yml"))
ALERTMANAGER = DEPLOY / "alertmanager" / "alertmanager.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "vitalstream.json"
FHIR_SAMPLE = ROOT / "tests" / "ingest" / "data" / "fhir_transaction_bp_panel.json"

# Series Prometheus makes itself for every target; no process exports them.
PROMETHEUS_SYNTHETIC = frozenset({"up"})
PROMQL_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan"})


def promql_metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions,
    aggregations, keywords, label names, grouping labels or durations."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\boffset\s+[0-9][0-9smhdwy]*", "", expr)  # offset 1d: a duration, not a name
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        if expr[match.end():].lstrip().startswith("("):
            continue  # a function or an aggregation
        if match.group().lower() not in PROMQL_KEYWORDS:
            names.add(match.group())
    return names


def rules() -> list[dict]:
    return [rule for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]
            for rule in group["rules"]]


def rule_expressions() -> list[str]:
    return [rule["expr"] for rule in rules()]


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def exported_names(exposition: str) -> set[str]:
    return {re.split(r"[{ ]", line, maxsplit=1)[0] for line in exposition.splitlines()
            if line and not line.startswith("#")}


def run_promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    promtool = require_executable("promtool")
    return subprocess.run([promtool, *map(str, args)], capture_output=True, text=True, timeout=60)


def test_metric_names_are_found_in_an_expression_and_functions_labels_are_not() -> None:
    expr = ('histogram_quantile(0.99, sum by (le) (rate(vitalstream_x_bucket{job="a-b", le!="1"}[5m])))'
            ' / scalar(sum(up)) > 0.1 unless on (instance) vitalstream_y or vector(0)')
    assert promql_metric_names(expr) == {"vitalstream_x_bucket", "up", "vitalstream_y"}


@pytest.mark.parametrize("config", ["prometheus/prometheus.yml", "k8s/prometheus.yml"])
def test_promtool_accepts_the_prometheus_configurations_and_their_rule_files(config) -> None:
    checked = run_promtool("check", "config", DEPLOY / config)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "rules found" in checked.stdout, "the configuration must load the alert rules"


def test_promtool_accepts_the_rules() -> None:
    assert RULES in RULE_FILES and len(RULE_FILES) >= 2
    checked = run_promtool("check", "rules", *RULE_FILES)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("tests", RULE_TESTS, ids=[p.name for p in RULE_TESTS])
def test_rule_unit_tests_pass(tests) -> None:
    tested = run_promtool("test", "rules", tests)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_unit_test() -> None:
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    cases = [case for path in RULE_TESTS for test in yaml.safe_load(path.read_text())["tests"]
             for case in test.get("alert_rule_test", [])]
    tested = {case["alertname"] for case in cases if case["exp_alerts"]}
    assert alerts == tested, f"alerts never seen firing in a unit test: {alerts - tested}"


def test_the_operations_rules_cover_scoring_faults_the_broker_and_lag() -> None:
    names = set().union(*map(promql_metric_names, rule_expressions()))
    for metric in ("vitalstream_monitor_errors_total", "vitalstream_broker_up",
                   "vitalstream_consumer_lag_messages"):
        assert metric in names, metric
    dashboard = set().union(*map(promql_metric_names, dashboard_expressions()))
    assert {"vitalstream_monitor_errors_total", "vitalstream_broker_up",
            "vitalstream_consumer_lag_messages"} <= dashboard


def test_every_rule_has_a_severity_the_alertmanager_routes() -> None:
    config = yaml.safe_load(ALERTMANAGER.read_text())
    routed = {matcher.split("=", 1)[1].strip('"') for route in config["route"]["routes"]
              for matcher in route["matchers"] if matcher.startswith("severity=")}
    for rule in rules():
        if "alert" in rule:
            assert rule["labels"]["severity"] in routed | {"warning"}, rule["alert"]
    assert "critical" in routed and config["route"]["receiver"]  # the rest goes to the default
    for receiver in config["receivers"]:
        assert receiver.get("webhook_configs"), f"{receiver['name']}: no receiver configured"


def test_prometheus_sends_to_the_alertmanager_compose_and_kubernetes_run() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    alertmanager = compose["services"]["alertmanager"]
    assert "./alertmanager/alertmanager.yml:/etc/alertmanager/alertmanager.yml:ro" in alertmanager["volumes"]
    (target,) = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())[
        "alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert target == "alertmanager:9093"
    (k8s_target,) = yaml.safe_load((DEPLOY / "k8s/prometheus.yml").read_text())[
        "alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    service = next(doc for doc in yaml.safe_load_all((DEPLOY / "k8s/alertmanager/alertmanager.yaml").read_text())
                   if doc["kind"] == "Service")
    assert k8s_target == f"{service['metadata']['name']}.vitalstream.svc.cluster.local:9093"
    # Kustomize reads only files in its folder: the copy there must be the same file.
    assert (DEPLOY / "k8s/alertmanager/alertmanager.yml").read_text() == ALERTMANAGER.read_text()


def test_amtool_accepts_the_alertmanager_configuration_and_routes_by_severity() -> None:
    amtool = require_executable("amtool")
    checked = subprocess.run([amtool, "check-config", str(ALERTMANAGER)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for labels, receiver in ((["severity=critical", "alertname=VitalstreamScoringFaults"], "page"),
                             (["severity=warning", "alertname=VitalstreamConsumerLagHigh"], "notify")):
        routed = subprocess.run([amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER}", *labels],
                                capture_output=True, text=True, timeout=60)
        assert routed.stdout.strip() == receiver, routed.stdout + routed.stderr


def test_dashboard_queries_are_valid_promql(tmp_path) -> None:
    # promtool parses rule expressions: each dashboard query becomes a recording rule.
    exprs = [e.replace("$__rate_interval", "5m") for e in dashboard_expressions()]
    assert len(exprs) >= 15
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    checked = run_promtool("check", "rules", path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_dashboard_shows_what_the_operators_asked_for() -> None:
    names = set().union(*map(promql_metric_names, dashboard_expressions()))
    for wanted in ("vitalstream_sample_processing_seconds_bucket", "vitalstream_samples_processed_total",
                   "vitalstream_alerts_out_total", "vitalstream_messages_deadlettered_total",
                   "vitalstream_stale_patients"):
        assert wanted in names
    queries = " ".join(dashboard_expressions())
    assert "histogram_quantile(0.5," in queries and "histogram_quantile(0.99," in queries
    assert "sum by (priority)" in queries
    dashboard = json.loads(DASHBOARD.read_text())
    assert {panel["datasource"]["uid"] for panel in dashboard["panels"] if "datasource" in panel} == {"prometheus"}
    datasource = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["uid"] == "prometheus"


# --- every metric named is exported by a running process ---------------------------

def vitals_message(patient_id: str, bed: str, t_ms: int, **values: object) -> bytes:
    return orjson.dumps([{"patient_id": patient_id, "ward": "4B", "bed": bed, "parameter": name,
                          "value": value, "device_time_ms": t_ms, "source": "monitor-" + bed}
                         for name, value in values.items()])


def deteriorating_ward(end_ms: int) -> list[bytes]:
    """30 minutes of a patient whose RR, SpO2 and HR go from normal to NEWS2 high (so
    alerts are published), one unreadable message (a dead letter) and one late reading."""
    messages = []
    for minute in range(30):
        frac = minute / 29
        messages.append(vitals_message("p-det", "12", end_ms - (29 - minute) * 60_000,
                                       heart_rate=80 + 50 * frac, resp_rate=16 + 14 * frac,
                                       spo2=97 - 9 * frac, systolic_bp=120 - 30 * frac,
                                       temperature=37.0 + 2.0 * frac, consciousness="A",
                                       on_oxygen=False))
    messages.append(b'{"patient_id": "p-x", trunc')
    return messages


def http(url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_http(url: str, process: subprocess.Popen, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{url}: process exited with {process.returncode}"
        try:
            if http(url)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


def station_scrape(bootstrap: str, tmp_path: Path) -> str:
    """The station's metrics with one SSE connection open and one acknowledgement sent."""
    import aiohttp

    from vitalstream.delivery.process import StationProcess

    token = "deploy-test-token-ward-4B"
    with StationProcess(bootstrap, {token: ["4B"]}, log_path=tmp_path / "station.log") as station:
        async def connected_scrape() -> str:
            auth = {"Authorization": f"Bearer {token}"}
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{station.url}/api/stream", headers=auth) as stream:
                    assert stream.status == 200
                    await asyncio.wait_for(stream.content.readline(), 20)
                    async with session.post(f"{station.url}/api/ack", headers=auth,
                                            json={"alert_id": "no-such-alert", "by": "nurse-1"}):
                        pass
                    async with session.get(f"{station.url}/metrics") as metrics:
                        return await metrics.text()

        return asyncio.run(connected_scrape())


# The charge nurse is called after 1 s: the oversight metrics then all have a series.
OVERSIGHT_ENV = {"VITALSTREAM_ESCALATION_CHAINS": orjson.dumps({"*": {"steps": [
    {"role": "bedside_nurse"}, {"role": "charge_nurse", "after_s": 1}]}}).decode(),
    "VITALSTREAM_OVERSIGHT_INTERVAL_S": "0.5"}


async def escalate_and_answer(settings: Settings) -> None:
    """Wait for the first alert's escalation, then acknowledge it, send an answer with an
    unknown reason (refused) and one that is taken."""
    from vitalstream.kafka import consumer

    source = consumer(settings, settings.topic_alerts)
    await source.start()
    called = None
    try:
        deadline = time.monotonic() + 30
        while called is None and time.monotonic() < deadline:
            for records in (await source.getmany(timeout_ms=300)).values():
                called = called or next((a for a in map(orjson.loads, (r.value for r in records))
                                         if a["status"] == "called"), None)
    finally:
        await source.stop()
    assert called is not None, "no escalation"
    actor = {"user_id": "u-1", "role": "charge_nurse", "name": "Charge"}
    # Signed as the station signs what a signed-in user does (the worker verifies it).
    base = {"patient_id": called["patient_id"], "alert_id": called["alert_id"], "actor": actor,
            "ward": called["ward"]}
    key = called["ward"].encode()
    await send_signed(settings, settings.topic_acks, key, orjson.dumps(
        {**base, "actor_wards": [called["ward"]], "at_ms": int(time.time() * 1000)}))
    for reason in ("because", "physician_informed"):
        await send_signed(settings, settings.topic_oversight, key, orjson.dumps(
            {**base, "type": "answer", "reason": reason, "at_ms": int(time.time() * 1000)}))


@pytest.mark.broker
def test_every_metric_in_rules_and_dashboard_is_exported_by_a_running_process(
        broker: EmbeddedBroker, tmp_path: Path) -> None:
    settings = Settings(kafka_bootstrap=broker.bootstrap)
    asyncio.run(ensure_topics(settings))
    gateway_port = free_port()
    gateway = subprocess.Popen(
        [sys.executable, "-m", "vitalstream", "gateway", "fhir", "--port", str(gateway_port),
         "--bootstrap", broker.bootstrap],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "gateway.log", "wb"), start_new_session=True)
    try:
        with WorkerProcess(broker.bootstrap, log_path=tmp_path / "worker.log", env=OVERSIGHT_ENV) as worker:
            gateway_url = f"http://127.0.0.1:{gateway_port}"
            wait_http(f"{gateway_url}/health", gateway)
            fhir = {"Content-Type": "application/fhir+json"}
            assert http(f"{gateway_url}/fhir", FHIR_SAMPLE.read_bytes(), fhir)[0] == 200
            assert http(f"{gateway_url}/fhir", b"{not json", fhir)[0] == 400
            messages = deteriorating_ward(int(time.time() * 1000))
            asyncio.run(send_all(settings, messages))
            deadline = time.monotonic() + 60
            # Every message read (the gateway's two too) and at least one alert out.
            while time.monotonic() < deadline and not (
                    worker.metric("vitalstream_messages_in_total") >= len(messages) + 2
                    and worker.metric("vitalstream_alerts_out_total") >= 1):
                time.sleep(0.3)
            asyncio.run(escalate_and_answer(settings))
            while time.monotonic() < deadline and worker.metric("vitalstream_alert_answers_total") < 1:
                time.sleep(0.3)
            exported = exported_names(worker.scrape())
            exported |= exported_names(http(f"{gateway_url}/metrics")[1].decode())
        exported |= exported_names(station_scrape(broker.bootstrap, tmp_path))
    finally:
        gateway.terminate()
        gateway.wait(timeout=20)
    named = {name for expr in rule_expressions() + dashboard_expressions()
             for name in promql_metric_names(expr)}
    assert len(named) >= 15
    recorded = {rule["record"] for rule in rules() if "record" in rule}  # made by Prometheus itself
    not_exported = named - exported - PROMETHEUS_SYNTHETIC - recorded
    assert not not_exported, f"named in rules or dashboard but exported by no process: {sorted(not_exported)}"
