"""A population shift on the simulated ward moves the PSI gauge over 0.25 and the
Prometheus rule fires, on the real broker, worker and Prometheus server. (promtool's
unit tests of the same rule are in test_governance_rules.py.)

The reference here is the simulated ward's own population (another seed), so the
unshifted ward reads as no drift; the shipped reference is the model's ICU training data,
which a simulated general ward does not match (docs/governance.md)."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml
from governance.govkit import run, send
from testkit import require_executable

from simulators.cohort import generate_cohort
from vitalstream.broker import EmbeddedBroker, free_port
from vitalstream.governance.drift import write_reference
from vitalstream.kafka import ensure_topics
from vitalstream.process import WorkerProcess
from vitalstream.replay.producer import encode_report
from vitalstream.samples import PARAM_INDEX
from vitalstream.settings import Settings

pytestmark = [pytest.mark.governance, pytest.mark.broker, pytest.mark.prometheus]

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules" / "governance.yml"
N_PATIENTS = 120
SHIFT = {"heart_rate_per_min": 30.0, "resp_rate_per_min": 7.0}


def ward_messages(start_ms: int, hours: float, seed: int, shift: dict | None = None) -> list[tuple[bytes, bytes]]:
    cohort = generate_cohort(N_PATIENTS, hours, seed=seed, deteriorating_fraction=0.0, start_ms=start_ms,
                             device_mix={"monitor": 1.0}, baseline_shift=shift)
    out = []
    for index, report in enumerate(cohort.reports()):
        raw, _ = encode_report(report, "json", index + 1)
        if raw is not None:
            out.append((report[0].patient_id.encode(), raw))
    return out


def reference_file(path: Path, start_ms: int) -> None:
    """Heart and respiratory rate of an unshifted ward (another seed), in 5 bins."""
    cohort = generate_cohort(N_PATIENTS, 1.0, seed=99, deteriorating_fraction=0.0, start_ms=start_ms,
                             device_mix={"monitor": 1.0})
    rows = [r for r in cohort.rows()]
    parameter = np.concatenate([r.parameter for r in rows])
    value = np.concatenate([r.value for r in rows])
    write_reference(path, {name: value[parameter == PARAM_INDEX[name]] for name in ("heart_rate", "resp_rate")},
                    source="simulated ward, seed 99", bins=5)


class Prometheus:
    def __init__(self, target: str, workdir: Path) -> None:
        binary = require_executable("prometheus")
        self.port = free_port()
        rules = yaml.safe_load(RULES.read_text())
        for group in rules["groups"]:  # the same expressions; no 15 min wait in a test
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = "0s"
        (workdir / "rules.yml").write_text(yaml.safe_dump(rules))
        (workdir / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f"rule_files: ['{workdir / 'rules.yml'}']\n"
            f"scrape_configs:\n  - job_name: vitalstream-worker\n    static_configs: [{{targets: ['{target}']}}]\n")
        self.process = subprocess.Popen(
            [binary, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=open(workdir / "prometheus.log", "wb"), start_new_session=True)

    def get(self, path: str, **query: str) -> dict:
        url = f"http://127.0.0.1:{self.port}{path}?{urllib.parse.urlencode(query)}"
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())["data"]

    def value(self, expression: str) -> float:
        result = self.get("/api/v1/query", query=expression)["result"]
        return float(result[0]["value"][1]) if result else float("nan")

    def firing(self, name: str) -> list[dict]:
        return [a for a in self.get("/api/v1/alerts")["alerts"]
                if a["labels"].get("alertname") == name and a["state"] == "firing"]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def wait(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.25)


@pytest.mark.timeout(180)
def test_a_population_shift_moves_the_psi_gauge_over_its_threshold_and_the_rule_fires(
        broker: EmbeddedBroker, tmp_path: Path) -> None:
    require_executable("prometheus")
    settings = Settings(kafka_bootstrap=broker.bootstrap)
    run(ensure_topics(settings))
    now_ms = int(time.time() * 1000)
    reference = tmp_path / "reference.json"
    reference_file(reference, now_ms - 6 * 3_600_000)
    env = {"VITALSTREAM_DRIFT_REFERENCE_PATH": str(reference), "VITALSTREAM_DRIFT_CENSUS_INTERVAL_S": "0.5",
           "VITALSTREAM_DRIFT_WINDOW_CENSUSES": "4", "VITALSTREAM_DRIFT_MIN_OBSERVATIONS": "300"}
    prometheus = None
    with WorkerProcess(broker.bootstrap, env=env, log_path=tmp_path / "worker.log") as worker:
        prometheus = Prometheus(f"127.0.0.1:{worker.web_port}", tmp_path)
        try:
            def psi(variable: str) -> float:
                try:
                    text = worker.scrape()
                except OSError:  # busy (the first batch compiles the feature kernels)
                    return float("nan")
                line = next(line for line in text.splitlines()
                            if line.startswith(f'vitalstream_drift_psi{{variable="{variable}"}}'))
                return float(line.split()[-1])

            # The ward as the reference knew it: PSI low once the window has filled.
            run(send(settings, settings.topic_raw, ward_messages(now_ms - 3 * 3_600_000, 0.5, seed=1)))
            wait(lambda: psi("heart_rate") == psi("heart_rate"), 60, "no PSI from the unshifted ward")
            time.sleep(2.5)  # the window holds censuses of the whole ward
            before = psi("heart_rate")
            assert before < 0.25, f"the unshifted ward already reads as drift: PSI {before:.3f}"
            wait(lambda: prometheus.value('vitalstream_drift_psi{variable="heart_rate"}') == before or
                 prometheus.value('vitalstream_drift_psi{variable="heart_rate"}') < 0.25, 30,
                 "Prometheus never scraped the PSI gauge")
            assert not prometheus.firing("VitalstreamInputDrift")

            # A cohort with higher heart and respiratory rates (the same ward 2 h later).
            run(send(settings, settings.topic_raw, ward_messages(now_ms - 3_600_000, 0.5, seed=2, shift=SHIFT)))
            wait(lambda: psi("heart_rate") > 0.25, 60, "the shifted population did not move the PSI gauge")
            wait(lambda: any(a["labels"].get("variable") == "heart_rate"
                             for a in prometheus.firing("VitalstreamInputDrift")), 30,
                 "VitalstreamInputDrift did not fire on the real Prometheus server")
            after = prometheus.value('max by (variable) (vitalstream_drift_psi{variable="heart_rate"})')
            assert after > 0.25 > before
        finally:
            prometheus.stop()
