"""Fuzz the three parsers: no exception escapes `parse_raw`, and every input ends in exactly
one place (samples or technical events, or a rejection with a reason code)."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vitalstream.ingest import REASON_CODES, TECHNICAL_KINDS, parse_raw

DATA = Path(__file__).parent / "data"
PCD01 = (DATA / "pcd01_monitor.hl7").read_bytes()
BUNDLE = (DATA / "fhir_transaction_bp_panel.json").read_bytes()
# VITALSTREAM_FUZZ_EXAMPLES=5000 for a longer hunt than the suite's bounded run.
FUZZ = settings(max_examples=int(os.environ.get("VITALSTREAM_FUZZ_EXAMPLES", "200")), deadline=None, suppress_health_check=[HealthCheck.too_slow])


def accounted_for(raw: bytes, fmt: str | None) -> None:
    result = parse_raw(raw, 1_773_570_000_000, fmt)
    if result.rejection is None:
        assert result.samples or result.technical
        assert {event["kind"] for event in result.technical} <= set(TECHNICAL_KINDS)
    else:
        # A known reason, never the parser-bug safety net, and nothing half delivered.
        assert result.rejection.reason in REASON_CODES - {"internal_error"}, result.rejection
        assert not result.samples and not result.technical


@FUZZ
@given(st.binary(max_size=600), st.sampled_from([None, "hl7", "fhir", "json"]))
def test_arbitrary_bytes(raw, fmt):
    accounted_for(raw, fmt)


def _mutations(seed: bytes):
    pieces = st.sampled_from([b"|", b"^", b"~", b"\\", b"&", b"\r", b"\n", b"\x0b", b"\x1c",
                              b"", b"9" * 30, b"-", b".", b"NaN", b"\xff", b'"', b"{", b"}", b"[",
                              b"null", b"1e999", b"-0", b"OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC||"])
    return st.lists(st.tuples(st.integers(0, len(seed)), st.integers(0, 40), pieces),
                    max_size=6).map(lambda edits: _apply(seed, edits))


def _apply(seed: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    data = seed
    for at, cut, piece in edits:
        at = min(at, len(data))
        data = data[:at] + piece + data[at + cut:]
    return data


@FUZZ
@given(_mutations(PCD01))
def test_mutated_pcd01_messages(raw):
    accounted_for(raw, "hl7")


@FUZZ
@given(_mutations(BUNDLE))
def test_mutated_fhir_bundles(raw):
    accounted_for(raw, "fhir")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)


@FUZZ
@given(st.fixed_dictionaries({}, optional={
    "resourceType": st.sampled_from(["Observation", "Bundle", "Patient"]) | json_values,
    "type": st.sampled_from(["collection", "batch", "transaction"]) | json_values,
    "status": st.sampled_from(["final", "amended"]) | json_values,
    "code": json_values, "subject": json_values, "effectiveDateTime": json_values,
    "valueQuantity": json_values, "component": json_values, "entry": json_values,
    "patient_id": json_values, "parameter": st.sampled_from(["spo2", "heart_rate"]) | json_values,
    "value": json_values, "device_time_ms": json_values,
}))
def test_structured_json_of_wrong_shapes(document):
    raw = orjson.dumps(document)
    accounted_for(raw, "fhir")
    accounted_for(raw, "json")
