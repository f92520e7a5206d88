"""Station tokens: each station sees its own wards, and a token never shows up anywhere."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from vitalstream.delivery.config import (
    StationAccess,
    StationConfigError,
    load_access,
    load_config,
)

TOKEN_4B = "4B-wall-screen-token-0001"
TOKEN_BOTH = "charge-nurse-token-0002"


def test_each_token_opens_only_its_own_wards() -> None:
    access = StationAccess.from_mapping({TOKEN_4B: ["4B"],
                                         TOKEN_BOTH: {"station": "Charge nurse", "wards": ["4B", "4C"]}})
    assert access.authenticate(TOKEN_4B).wards == frozenset({"4B"})
    both = access.authenticate(TOKEN_BOTH)
    assert both.name == "Charge nurse" and both.wards == frozenset({"4B", "4C"})


@pytest.mark.parametrize("presented", ["", None, TOKEN_4B[:-1], TOKEN_4B + "x", TOKEN_4B.upper(), " " + TOKEN_4B])
def test_near_miss_tokens_are_refused(presented: str | None) -> None:
    assert StationAccess.from_mapping({TOKEN_4B: ["4B"]}).authenticate(presented) is None


def test_token_never_appears_in_repr_or_errors() -> None:
    access = StationAccess.from_mapping({TOKEN_4B: ["4B"]})
    assert TOKEN_4B not in repr(access) and TOKEN_4B not in repr(access.stations)
    with pytest.raises(StationConfigError) as short:
        StationAccess.from_mapping({"short-secret": ["4B"]})
    assert "short-secret" not in str(short.value)
    with pytest.raises(StationConfigError) as no_wards:
        StationAccess.from_mapping({TOKEN_4B: []})
    assert TOKEN_4B not in str(no_wards.value)
    with pytest.raises(StationConfigError) as broken:
        StationAccess.from_json('{"' + TOKEN_4B + '": ["4B"')
    assert TOKEN_4B not in str(broken.value)


def test_tokens_file_wins_over_the_environment_variable(tmp_path: Path) -> None:
    path = tmp_path / "stations.json"
    path.write_bytes(orjson.dumps({TOKEN_BOTH: ["4C"]}))
    access = load_access({"VITALSTREAM_STATION_TOKENS_FILE": str(path),
                          "VITALSTREAM_STATION_TOKENS": orjson.dumps({TOKEN_4B: ["4B"]}).decode()})
    assert access.authenticate(TOKEN_BOTH) is not None and access.authenticate(TOKEN_4B) is None
    with pytest.raises(StationConfigError, match="no stations configured"):
        load_access({})
    with pytest.raises(StationConfigError, match="cannot read"):
        load_access({"VITALSTREAM_STATION_TOKENS_FILE": str(tmp_path / "absent.json")})


def test_service_settings_from_the_environment() -> None:
    config = load_config({"VITALSTREAM_STATION_PORT": "7001", "VITALSTREAM_STATION_SECURE_COOKIE": "true"})
    assert (config.port, config.secure_cookie, config.topic_alerts_fhir) == (7001, True, "alerts.fhir")
    with pytest.raises(StationConfigError):
        load_config({"VITALSTREAM_STATION_PORT": "http"})
