"""Alerts for EHRs and alarm managers, parsed back with the libraries ingestion uses:
FHIR with fhir.resources, HL7 v2 with vitalstream's own splitter and python-hl7."""

from __future__ import annotations

import hl7
import pytest
from fhir.resources.R4B.flag import Flag
from ward_feed import deteriorating

from vitalstream.delivery.export import alert_to_fhir_flag, alert_to_oru_r40, control_id
from vitalstream.ingest.hl7v2 import Delimiters, Segment, decode_hl7


@pytest.fixture(scope="module")
def alerts() -> list[dict]:
    return deteriorating("p-det", "4B", "12", ack_by="nurse-7 (4B desk)")[0]


def test_flag_is_valid_fhir_and_carries_iec_priority(alerts: list[dict]) -> None:
    for alert in alerts:
        flag = Flag.model_validate(alert_to_fhir_flag(alert))  # R4B Flag is R4's, unchanged
        priority = next(e for e in flag.extension if e.url.endswith("flag-priority"))
        assert priority.valueCodeableConcept.coding[0].code == {"high": "PH", "medium": "PM", "low": "PL"}[alert["priority"]]
        assert flag.status == "active" and flag.code.text == alert["summary"]
        assert flag.subject.identifier.value == "p-det"
    acked = alert_to_fhir_flag(alerts[-1])
    assert any(e.get("valueString") == "nurse-7 (4B desk)" for e in acked["extension"])
    news2 = next(e for e in acked["extension"] if e["url"].endswith("news2-total"))
    assert news2["valueInteger"] == alerts[-1]["payload"]["news2"]["total"]


def test_resolved_alert_is_an_inactive_flag_with_an_end(alerts: list[dict]) -> None:
    resolved = {**alerts[-1], "status": "resolved", "event_id": alerts[-1]["alert_id"] + "/resolved",
                "device_time_ms": alerts[-1]["device_time_ms"] + 3_600_000}
    flag = Flag.model_validate(alert_to_fhir_flag(resolved))
    assert flag.status == "inactive" and flag.period.end is not None
    assert flag.period.start < flag.period.end


def segments(message: bytes) -> dict[str, list[Segment]]:
    text = decode_hl7(message)
    delimiters = Delimiters(text.split("\r", 1)[0])
    out: dict[str, list[Segment]] = {}
    for line in text.split("\r"):
        segment = Segment(line, delimiters)
        out.setdefault(segment.kind, []).append(segment)
    return out


def test_oru_r40_reads_back_with_ingest_splitter(alerts: list[dict]) -> None:
    high = alerts[1]
    parsed = segments(alert_to_oru_r40(high))
    assert parsed["MSH"][0].get(9, component=1) == "ORU" and parsed["MSH"][0].get(9, component=2) == "R40"
    assert parsed["MSH"][0].get(10) == control_id(high["event_id"])
    assert parsed["PID"][0].get(3) == "p-det"
    assert (parsed["PV1"][0].get(3, component=1), parsed["PV1"][0].get(3, component=3)) == ("4B", "12")
    values = {obx.get(3, component=2): obx.get(5) for obx in parsed["OBX"]}
    assert values["MDC_ATTR_ALARM_PRIORITY"] == "PH", "a high alert is PH in PCD-04"
    assert values["MDC_ATTR_EVENT_PHASE"] == "escalate"
    assert values["MDC_ATTR_ALERT_TYPE"] == "SP", "deterioration is physiological"
    assert values["NEWS2 total score"] == str(high["payload"]["news2"]["total"])
    assert parsed["OBX"][0].get(5) == high["summary"], "the summary survives HL7 escaping"


def test_oru_r40_reads_back_with_python_hl7_and_escapes_delimiters(alerts: list[dict]) -> None:
    tricky = {**alerts[-1], "summary": "Bed 12 | SpO2 ^ 91 % & falling ~ see \\ notes"}
    message = hl7.parse(alert_to_oru_r40(tricky).decode())
    assert str(message.segment("MSH")[9]) == "ORU^R40^ORU_R40"
    obx = message.segments("OBX")
    assert len(obx) == 7
    assert message.unescape(str(obx[0][5])) == tricky["summary"]
    assert str(obx[3][5]) == "alert-acknowledged", "acknowledged alerts are inactivated in PCD-04"


def test_redelivered_alert_gets_the_same_control_id_and_status_changes_a_new_one(alerts: list[dict]) -> None:
    assert alert_to_oru_r40(alerts[0]) == alert_to_oru_r40(dict(alerts[0]))
    assert control_id(alerts[1]["event_id"]) != control_id(alerts[2]["event_id"])
