"""The keyring every consumer of control and alert records trusts (vitalstream.signing)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from pydantic import SecretStr

from vitalstream.settings import Settings
from vitalstream.signing import Keyring, KeyringError, SignatureError, generate_keys, keys_json

pytestmark = pytest.mark.security


def settings(**values: object) -> Settings:
    return Settings(kafka_bootstrap="127.0.0.1:1", **values)


def test_a_record_signed_for_one_topic_key_or_value_does_not_verify_for_another() -> None:
    ring = Keyring.from_json(keys_json(generate_keys()), current="station-1")
    headers = ring.sign("alerts.ack", b"4B", b'{"alert_id": "a"}')
    assert ring.verify("alerts.ack", b"4B", b'{"alert_id": "a"}', headers, {"station"}) == "station"
    for topic, key, value in (("patients.settings", b"4B", b'{"alert_id": "a"}'),
                              ("alerts.ack", b"4C", b'{"alert_id": "a"}'),
                              ("alerts.ack", b"4B", b'{"alert_id": "b"}')):
        with pytest.raises(SignatureError, match="bad_signature"):
            ring.verify(topic, key, value, headers, {"station"})
    with pytest.raises(SignatureError, match="wrong_service"):
        ring.verify("alerts.ack", b"4B", b'{"alert_id": "a"}', headers, {"worker"})
    with pytest.raises(SignatureError, match="unsigned"):
        ring.verify("alerts.ack", b"4B", b"{}", [], {"station"})
    with pytest.raises(SignatureError, match="bad_signature"):
        ring.verify("alerts.ack", b"4B", b"{}", [("vs-sig", b"\xff\xfe")], {"station"})
    other = Keyring.from_json(keys_json(generate_keys()))
    with pytest.raises(SignatureError, match="bad_signature"):  # same key id, another secret
        other.verify("alerts.ack", b"4B", b'{"alert_id": "a"}', headers, {"station"})


def test_a_process_signs_with_its_own_service_key_and_refuses_another_services() -> None:
    keys = keys_json(generate_keys())
    assert Keyring.for_process(settings(signing_keys=SecretStr(keys)), "worker").current == "worker-1"
    with pytest.raises(KeyringError, match="is a station key, not a worker key"):
        Keyring.for_process(settings(signing_keys=SecretStr(keys), signing_key_id="station-1"), "worker")
    with pytest.raises(KeyringError, match="no signing keys"):
        Keyring.for_process(settings(signing_keys=SecretStr("")), "worker")
    with pytest.raises(KeyringError, match="shorter than 32"):
        Keyring.from_json(orjson.dumps({"w": {"service": "worker", "secret": "short"}}).decode())
    assert "secret" not in repr(Keyring.from_json(keys)) and keys[-20:] not in repr(Keyring.from_json(keys))


def test_keys_are_read_from_a_file_when_the_variable_is_empty(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "vitalstream", "keys", "--service", "worker",
                           "--service", "station", "--suffix", "2026-06"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    (tmp_path / "keys.json").write_text(done.stdout)
    ring = Keyring.for_process(settings(signing_keys=SecretStr(""), signing_keys_file=str(tmp_path / "keys.json")),
                               "station")
    assert ring.key_ids() == ["station-2026-06", "worker-2026-06"] and ring.current == "station-2026-06"
    with pytest.raises(KeyringError, match="cannot read"):
        Keyring.for_process(settings(signing_keys=SecretStr(""), signing_keys_file=str(tmp_path / "absent")), "worker")
