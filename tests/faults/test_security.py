"""TLS to the broker through Debian's stunnel4 in front of the test broker (a CA and a
server certificate made at test time); a plaintext client is refused there. SASL settings
reach both the aiokafka clients and Faust; secrets are masked whenever settings are shown."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import faust
import pytest
from faults.faultkit import cohort_workload, differences, read_topic, reference_alerts, send
from testkit import require_executable

from vitalstream.broker import EmbeddedBroker, free_port, wait_for_port
from vitalstream.kafka import ensure_topics
from vitalstream.process import WorkerProcess
from vitalstream.settings import Settings

SECRET = "s3cr3t-sasl-password-never-printed"


def make_ca_and_server_cert(directory: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) for 127.0.0.1, valid for a day,
    made with the openssl command (stunnel's own toolkit)."""
    openssl = require_executable("openssl")
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    cert, key, request = directory / "server.pem", directory / "server.key", directory / "server.csr"
    extensions = directory / "server.ext"
    extensions.write_text("subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\n")
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    for command in (
        [openssl, "req", "-x509", *new_key, "-keyout", ca_key, "-out", ca, "-days", "1",
         "-subj", "/CN=vitalstream test CA"],
        [openssl, "req", *new_key, "-keyout", key, "-out", request, "-subj", "/CN=127.0.0.1"],
        [openssl, "x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", cert, "-days", "1", "-extfile", extensions],
    ):
        subprocess.run([str(part) for part in command], check=True, capture_output=True)
    return ca, cert, key


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[EmbeddedBroker, Path]]:
    """tansu behind stunnel: clients reach (and are told of) only the TLS port."""
    stunnel = require_executable("stunnel4", "stunnel")
    ca, cert, key = make_ca_and_server_cert(tmp_path)
    tls_port = free_port()
    with EmbeddedBroker(advertised_port=tls_port, log_path=tmp_path / "tansu.log") as broker:
        config = tmp_path / "stunnel.conf"
        config.write_text(f"foreground = yes\npid =\n[kafka]\naccept = 127.0.0.1:{tls_port}\n"
                          f"connect = 127.0.0.1:{broker.port}\ncert = {cert}\nkey = {key}\n")
        log = open(tmp_path / "stunnel.log", "ab")  # noqa: SIM115
        process = subprocess.Popen([stunnel, str(config)], stdout=log, stderr=subprocess.STDOUT)
        try:
            assert wait_for_port("127.0.0.1", tls_port, 10), "stunnel did not listen"
            yield broker, ca
        finally:
            process.terminate()
            process.wait(5)
            log.close()


@pytest.mark.faults
@pytest.mark.broker
@pytest.mark.timeout(200)
def test_worker_reads_and_alerts_over_tls_and_a_plaintext_client_is_refused(
        tls_broker: tuple[EmbeddedBroker, Path], tmp_path: Path) -> None:
    broker, ca = tls_broker
    settings = Settings(kafka_bootstrap=broker.bootstrap, kafka_security_protocol="SSL",
                        kafka_ssl_cafile=str(ca))
    asyncio.run(ensure_topics(settings))
    plaintext = Settings(kafka_bootstrap=broker.bootstrap)
    started = time.monotonic()
    with pytest.raises(Exception):  # noqa: B017 - any failure will do, as long as it fails
        asyncio.run(asyncio.wait_for(ensure_topics(plaintext, timeout_s=3), 10))
    assert time.monotonic() - started < 15
    ward = cohort_workload(max_messages=1500)  # the first two hours hold the first alerts
    reference = reference_alerts(m.value for m in ward.messages)
    assert any(a["status"] == "raised" for a in reference)
    env = {"VITALSTREAM_KAFKA_SECURITY_PROTOCOL": "SSL", "VITALSTREAM_KAFKA_SSL_CAFILE": str(ca)}
    with WorkerProcess(broker.bootstrap, env=env, log_path=tmp_path / "worker.log") as worker:
        asyncio.run(send(settings, ward.messages))
        expected = {a["event_id"] for a in reference}
        records = asyncio.run(read_topic(
            settings, settings.topic_alerts,
            lambda got: expected <= {r.value.split(b'"event_id":"')[1].split(b'"')[0].decode() for r in got},
            90))
        assert worker.metric("vitalstream_messages_in_total") == len(ward.messages)
    missing, extra = differences(reference, records)
    assert not missing and not extra, (missing, extra)


def test_sasl_settings_reach_aiokafka_and_faust_and_the_password_is_masked(tmp_path: Path) -> None:
    ca, _, _ = make_ca_and_server_cert(tmp_path)
    settings = Settings(kafka_bootstrap="broker:9093", kafka_security_protocol="SASL_SSL",
                        kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username="vitalstream",
                        kafka_sasl_password=SECRET, kafka_ssl_cafile=str(ca))
    kwargs = settings.kafka_client_kwargs()
    assert kwargs["security_protocol"] == "SASL_SSL" and kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["sasl_plain_username"] == "vitalstream" and kwargs["sasl_plain_password"] == SECRET
    assert kwargs["ssl_context"] is not None
    credentials = settings.faust_credentials()
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.username == "vitalstream" and credentials.password == SECRET
    assert credentials.ssl_context is kwargs["ssl_context"] or credentials.ssl_context is not None
    # Shown anywhere (a settings dump, a repr in a log line, an error): masked.
    for shown in (repr(settings), str(settings), str(settings.masked()), str(settings.model_dump())):
        assert SECRET not in shown
    assert settings.masked()["kafka_sasl_password"] == "**********"
