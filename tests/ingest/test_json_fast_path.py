"""The ingest fast path (`json_rows`) must give exactly what `parse_raw` gives for every
message it takes, and leave every other message to `parse_raw`."""

from __future__ import annotations

import math

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vitalstream.ingest import json_rows, parse_raw
from vitalstream.samples import PARAMETERS, sample_row

RECEIVED_MS = 1_773_569_700_050

texts = st.one_of(st.text(max_size=6), st.integers(-3, 3), st.booleans(), st.none(), st.floats(allow_nan=True))
values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**63, 2**63), st.booleans(),
                   st.text(max_size=3), st.none(), st.sampled_from(["A", "v", 1, 0, 2]))
times = st.one_of(st.integers(-10, 2**62), st.floats(allow_nan=True), st.booleans(), st.text(max_size=3),
                  st.just(253_402_300_799_999), st.just(253_402_300_800_000))
units = st.one_of(st.just(""), st.sampled_from(["/min", "%", "mmHg", "Cel", "bpm", "degF"]), texts)


WELL_FORMED = {
    "patient_id": st.text(min_size=1, max_size=8), "parameter": st.sampled_from(PARAMETERS),
    "value": st.one_of(st.floats(-1e3, 1e3), st.integers(-500, 500)),
    "device_time_ms": st.integers(0, 253_402_300_799_999), "ward": st.text(max_size=4),
    "bed": st.text(max_size=4), "source": st.text(max_size=4), "source_code": st.text(max_size=4),
    "unit": st.sampled_from(["", "/min", "%", "mmHg", "Cel"]), "artefact": st.booleans(),
}
ANYTHING = {"patient_id": texts, "parameter": texts, "value": values, "device_time_ms": times,
            "ward": texts, "bed": texts, "source": texts, "source_code": texts, "unit": units,
            "artefact": texts}


@st.composite
def records(draw: st.DrawFn) -> dict:
    record = {}
    for key, strategy in WELL_FORMED.items():
        # Each field is usually well-formed, sometimes absent, sometimes anything.
        roll = draw(st.integers(0, 19))
        if roll == 0:
            continue
        record[key] = draw(ANYTHING[key] if roll == 1 else strategy)
    return record


def slow(raw: bytes) -> list[tuple] | None:
    result = parse_raw(raw, RECEIVED_MS)
    if result.rejection is not None or result.technical:
        return None
    return [sample_row(s) for s in result.samples]


def same(a: list[tuple], b: list[tuple]) -> bool:
    # NaN is never accepted, so plain equality (with types) is the test.
    return len(a) == len(b) and all(
        len(x) == len(y) and all(type(u) is type(v) and (u == v or (isinstance(u, float) and math.isnan(u)
                                                                   and math.isnan(v)))
                                 for u, v in zip(x, y, strict=True))
        for x, y in zip(a, b, strict=True))


@settings(max_examples=1000, deadline=None)
@given(st.lists(records(), min_size=1, max_size=3), st.sampled_from(["one", "list", "samples"]))
def test_fast_path_agrees_with_parse_raw(batch: list[dict], shape: str) -> None:
    document = batch[0] if shape == "one" else batch if shape == "list" else {"samples": batch}
    try:
        raw = orjson.dumps(document)
    except TypeError:  # e.g. an integer beyond 64 bits: not a message a gateway can send
        return
    fast = json_rows(raw, RECEIVED_MS)
    if fast is not None:
        expected = slow(raw)
        assert expected is not None, f"fast path accepted what parse_raw refuses: {raw!r}"
        assert same(fast, expected), (fast, expected)


def test_fast_path_takes_the_common_message() -> None:
    raw = orjson.dumps({"patient_id": "p1", "ward": "4B", "bed": "12", "parameter": "heart_rate",
                        "value": 88, "device_time_ms": 1_773_569_700_000, "source": "gw-1"})
    rows = json_rows(raw, RECEIVED_MS)
    assert rows == slow(raw)
    assert rows is not None and rows[0][4] == 88.0 and type(rows[0][4]) is float
    # A gateway's list, and its {"samples": [...]}, take the fast path too.
    second = {"patient_id": "p2", "parameter": "spo2", "value": 97.5, "device_time_ms": 1_773_569_700_001,
              "unit": "%", "artefact": True}
    for document in ([orjson.loads(raw), second], {"samples": [orjson.loads(raw), second], "gateway": "gw-1"}):
        batch = orjson.dumps(document)
        rows = json_rows(batch, RECEIVED_MS)
        assert rows is not None and len(rows) == 2 and rows == slow(batch)


@pytest.mark.parametrize("raw", [
    b'{"patient_id": "p1", "parameter": "heart_rate", "value": NaN, "device_time_ms": 1}',
    b'{"patient_id": "p1", "parameter": "consciousness", "value": "A", "device_time_ms": 1}',
    b'{"patient_id": "p1", "parameter": "heart_rate", "value": 80, "device_time_ms": 1, "unit": "bpm"}',
    b'{"patient_id": 7, "parameter": "heart_rate", "value": 80, "device_time_ms": 1}',
    b'{"resourceType": "Observation"}',
    b' {"patient_id": "p1", "parameter": "heart_rate", "value": 80, "device_time_ms": 1}',
    b'MSH|^~\\&|',
    b'[]',
    b'not json',
    b'{"patient_id": "p1", "parameter": "heart_rate", "value": 80, "device_time_ms": 1, "x": '
    + b'{"a": ' * 5000 + b'1' + b'}' * 5001,  # nested deeper than the decoder recurses
    b'{"patient_id": "p\x80", "parameter": "heart_rate", "value": 80, "device_time_ms": 1}',  # not UTF-8
])
def test_everything_else_goes_to_the_full_path(raw: bytes) -> None:
    assert json_rows(raw, RECEIVED_MS) is None
