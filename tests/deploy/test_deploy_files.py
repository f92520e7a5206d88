"""The deployment files, checked without a Docker engine or a cluster: they parse, they set
only settings that exist, their commands are commands the CLI accepts, and the pieces that
refer to each other (selectors, ports, secrets, scrape targets) agree."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from testkit import missing

from vitalstream.cli import COMMANDS, UsageError, build_parser
from vitalstream.commands.config import known_variables
from vitalstream.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value
    return pairs


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    documents = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            documents.extend(load_yaml_documents(path))
    return documents


def of_kind(manifests: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m for m in manifests if m["kind"] == kind]


def containers(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for d in of_kind(manifests, "Deployment") for c in d["spec"]["template"]["spec"]["containers"]]


def vitalstream_names(names: Any) -> set[str]:
    return {n for n in names if n.startswith("VITALSTREAM_") or n.startswith("NUMBA_")}


def test_every_yaml_and_json_file_in_deploy_parses() -> None:
    files = [*DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.json")]
    assert len(files) >= 12
    for path in files:
        if path.suffix == ".json":
            json.loads(path.read_text())
        else:
            assert load_yaml_documents(path), path


def test_shared_env_file_sets_only_settings_and_they_validate() -> None:
    pairs = env_file(DEPLOY / "vitalstream.env")
    assert set(pairs) <= known_variables(), set(pairs) - known_variables()
    # Values of the right type: the same validation a worker does when it starts.
    settings = Settings(**{name.removeprefix("VITALSTREAM_").lower(): value
                           for name, value in pairs.items()})
    assert settings.kafka_bootstrap == "kafka:9092"
    assert settings.worker_web_host == "0.0.0.0", "a worker in a container must listen beyond loopback"


def test_compose_services_set_only_settings_that_exist(compose) -> None:
    for name, service in compose["services"].items():
        environment = service.get("environment") or {}
        assert isinstance(environment, dict), name
        unknown = vitalstream_names(environment) - known_variables()
        assert not unknown, f"{name}: {unknown}"


def test_dockerfile_sets_only_settings_that_exist_and_runs_as_non_root() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", dockerfile, re.M)) >= 2, "multi-stage"
    names = set(re.findall(r"\b((?:VITALSTREAM|NUMBA)_[A-Z_]+)=", dockerfile))
    assert names and names <= known_variables(), names - known_variables()
    users = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert users and not users[-1].startswith(("root", "0")), "the last USER must not be root"
    # The cache is warmed after switching user, so the runtime user owns and can reuse it.
    assert dockerfile.index("warm_up()") > dockerfile.rindex("\nUSER ")


def test_kubernetes_configmap_and_secrets_set_only_settings_that_exist(manifests) -> None:
    names: set[str] = set()
    for config in of_kind(manifests, "ConfigMap"):
        names |= set(config["data"])
    for secret in of_kind(manifests, "Secret"):
        names |= vitalstream_names(secret.get("stringData", {}))
    for container in containers(manifests):
        names |= {e["name"] for e in container.get("env", [])}
    assert names and vitalstream_names(names) <= known_variables(), vitalstream_names(names) - known_variables()


def test_kubernetes_configmap_holds_the_same_settings_as_the_compose_env_file(manifests) -> None:
    (config,) = of_kind(manifests, "ConfigMap")
    compose_names = set(env_file(DEPLOY / "vitalstream.env"))
    # Kubernetes adds the TLS/SASL settings of a real cluster; nothing compose has is missing.
    assert compose_names <= set(config["data"]), compose_names - set(config["data"])


def service_commands(compose, manifests) -> list[tuple[str, list[str]]]:
    found = [(f"compose:{name}", service["command"]) for name, service in compose["services"].items()
             if "build" in service or service.get("image", "").startswith("vitalstream")]
    found += [(f"k8s:{c['name']}", c["args"]) for c in containers(manifests)]
    return found


def test_every_command_the_files_run_is_one_the_cli_accepts(compose, manifests, capsys) -> None:
    parser = build_parser()
    commands = service_commands(compose, manifests)
    assert {argv[0] for _, argv in commands} >= {"worker", "gateway", "station"}
    for where, argv in commands:
        if argv[0] == "station" and "vitalstream.commands.station" not in COMMANDS:
            continue  # reported by the next test
        try:
            parser.parse_args(argv)
        except UsageError as exc:
            pytest.fail(f"{where}: `vitalstream {shlex.join(argv)}`: {exc}")


def test_the_station_command_the_files_run_exists() -> None:
    if "vitalstream.commands.station" not in COMMANDS:
        missing("`vitalstream station` is not registered in vitalstream/cli.py yet")
    build_parser().parse_args(["station"])


def test_compose_worker_scales_without_port_clashes_and_prometheus_finds_it(compose) -> None:
    worker = compose["services"]["worker"]
    assert "ports" not in worker and "container_name" not in worker, "replicas would clash"
    assert worker["deploy"]["replicas"] >= 2
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    (worker_sd,) = jobs["vitalstream-worker"]["dns_sd_configs"]
    assert worker_sd["names"] == ["worker"]
    assert worker_sd["port"] == Settings(**{"worker_web_port": env_file(DEPLOY / "vitalstream.env")
                                            ["VITALSTREAM_WORKER_WEB_PORT"]}).worker_web_port
    # Each gateway target is the service's metrics port as given on its command line.
    for sd in jobs["vitalstream-gateway"]["dns_sd_configs"]:
        (service_name,) = sd["names"]
        argv = compose["services"][service_name]["command"]
        flag = "--metrics-port" if "--metrics-port" in argv else "--port"
        assert int(argv[argv.index(flag) + 1]) == sd["port"], service_name


def test_compose_mounts_the_grafana_and_prometheus_files_that_exist(compose) -> None:
    for service in ("prometheus", "grafana"):
        for volume in compose["services"][service]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), f"{service}: {source}"
    grafana = compose["services"]["grafana"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"] if v.startswith("./")}
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/vitalstream.yml").read_text())
    assert provider["providers"][0]["options"]["path"] in mounted
    assert (DEPLOY / mounted["/etc/grafana/dashboards"] / Path(home).name).is_file()


def test_compose_kafka_is_apache_kafka_in_kraft_mode(compose) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"] == "apache/kafka:3.9.0"
    assert set(kafka["environment"]["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    bootstrap = env_file(DEPLOY / "vitalstream.env")["VITALSTREAM_KAFKA_BOOTSTRAP"]
    assert bootstrap in kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"]


def selected_by(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def test_kubernetes_selectors_ports_probes_and_volumes_agree(manifests) -> None:
    deployments = of_kind(manifests, "Deployment")
    names = {(m["kind"], m["metadata"]["name"]) for m in manifests}
    for deployment in deployments:
        template = deployment["spec"]["template"]
        assert selected_by(deployment["spec"]["selector"]["matchLabels"], template["metadata"]["labels"])
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for volume in volumes.values():
            if "secret" in volume:
                assert ("Secret", volume["secret"]["secretName"]) in names
        for container in pod["containers"]:
            ports = {p["name"] for p in container.get("ports", [])}
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                if probe in container:
                    action = container[probe].get("httpGet") or container[probe].get("tcpSocket")
                    assert action["port"] in ports, (deployment["metadata"]["name"], probe)
            for source in container.get("envFrom", []):
                kind, ref = ("ConfigMap", source["configMapRef"]) if "configMapRef" in source \
                    else ("Secret", source["secretRef"])
                assert (kind, ref["name"]) in names
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes
    for service in of_kind(manifests, "Service"):
        pods = [d for d in deployments if selected_by(service["spec"]["selector"],
                                                      d["spec"]["template"]["metadata"]["labels"])]
        assert pods, f"service {service['metadata']['name']} selects no pod"
        for port in service["spec"]["ports"]:
            for deployment in pods:
                container_ports = {p["name"] for c in deployment["spec"]["template"]["spec"]["containers"]
                                   for p in c.get("ports", [])}
                assert port["targetPort"] in container_ports, service["metadata"]["name"]


def test_workers_have_liveness_readiness_and_a_disruption_budget(manifests) -> None:
    (worker,) = [d for d in of_kind(manifests, "Deployment") if d["metadata"]["name"] == "vitalstream-worker"]
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    budgets = [b for b in of_kind(manifests, "PodDisruptionBudget")
               if selected_by(b["spec"]["selector"]["matchLabels"], worker["spec"]["template"]["metadata"]["labels"])]
    assert budgets and budgets[0]["spec"]["maxUnavailable"] == 1
    # Every long-running component has a budget, so a node drain never empties it.
    for deployment in of_kind(manifests, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert any(selected_by(b["spec"]["selector"]["matchLabels"], labels)
                   for b in of_kind(manifests, "PodDisruptionBudget")), deployment["metadata"]["name"]


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"}


def test_kubernetes_metrics_services_are_the_prometheus_targets(manifests) -> None:
    prometheus = yaml.safe_load((K8S / "prometheus.yml").read_text())
    services = {s["metadata"]["name"]: s for s in of_kind(manifests, "Service")}
    for job in prometheus["scrape_configs"]:
        for sd in job["dns_sd_configs"]:
            (name,) = sd["names"]
            service = services[name.split(".")[0]]
            assert service["spec"]["clusterIP"] == "None", "A records per pod need a headless service"
            assert sd["port"] in {p["port"] for p in service["spec"]["ports"]}


@pytest.mark.security
def test_no_secret_is_shipped_and_make_secrets_makes_every_one_compose_mounts(compose, tmp_path) -> None:
    import shutil
    import subprocess

    from vitalstream.delivery.config import StationAccess
    from vitalstream.signing import Keyring

    tracked = subprocess.run(["git", "ls-files", "deploy/secrets"], cwd=DEPLOY.parent, capture_output=True,
                             text=True, check=True).stdout.split()
    assert tracked in ([], ["deploy/secrets/README.md"]), f"secrets committed: {tracked}"
    made = []
    for run in ("first", "second"):
        copy = tmp_path / run
        copy.mkdir()
        shutil.copy(DEPLOY / "make-secrets.sh", copy)
        subprocess.run(["sh", str(copy / "make-secrets.sh")], check=True, capture_output=True)
        for secret in compose["secrets"].values():
            assert (copy / secret["file"]).is_file(), secret["file"]
        tokens = StationAccess.from_json((copy / "secrets/station_tokens.json").read_bytes())
        assert len(tokens.stations) == 2
        worker = Keyring.from_json((copy / "secrets/signing_keys.worker.json").read_text())
        station = Keyring.from_json((copy / "secrets/signing_keys.station.json").read_text())
        assert worker.services() == {"worker", "station", "admin"} and station.services() == {"station", "worker"}
        # What the station signs, the worker verifies, and the reverse.
        value = b'{"alert_id": "a"}'
        signed = station.for_service("station").sign("alerts.ack", b"4B", value)
        assert worker.verify("alerts.ack", b"4B", value, signed, {"station"}) == "station"
        made.append((copy / "secrets/station_tokens.json").read_text()
                    + (copy / "secrets/signing_keys.worker.json").read_text())
    assert made[0] != made[1], "every installation gets its own random secrets"
