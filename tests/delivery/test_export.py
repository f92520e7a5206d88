"""Alerts for EHRs and alarm managers, parsed back with third-party libraries: FHIR with
fhir.resources (its R4B models: R4B's Flag is R4's, and fhir.resources 8 has no R4 package),
HL7 v2 with vitalstream's own splitter, python-hl7 and hl7apy (strict v2.6 structure check)."""

from __future__ import annotations

import hl7
import pytest
from fhir.resources.R4B.flag import Flag
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.exceptions import ValidationError
from hl7apy.parser import parse_message
from ward_feed import deteriorating

from vitalstream.delivery.export import (
    alert_to_fhir_flag,
    alert_to_fhir_flags,
    alert_to_oru_r40,
    control_id,
)
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
    assert parsed["PID"][0].get(5, component=7) == "U", "PID-5 is present: name type unspecified"
    assert (parsed["PV1"][0].get(3, component=1), parsed["PV1"][0].get(3, component=3)) == ("4B", "12")
    values = {obx.get(3, component=2): obx.get(5) for obx in parsed["OBX"]}
    assert values["MDC_ATTR_ALARM_PRIORITY"] == "PH", "a high alert is PH in PCD-04"
    assert values["MDC_ATTR_EVENT_PHASE"] == "escalate"
    assert values["MDC_ATTR_ALERT_TYPE"] == "SP", "deterioration is physiological"
    assert values["NEWS2 total score"] == str(high["payload"]["news2"]["total"])
    assert parsed["OBX"][0].get(5, component=2) == high["summary"], "the summary survives HL7 escaping"


# IHE PCD TF-2, PCD-04: the alert's OBX rows in this order, OBX-4 <path>.<facet> with facets
# 1 event identification, 2 source, 3 phase, 4 state, 5 inactivation, 6 priority, 7 type.
PCD04_ROWS = [("196616", "MDC_EVT_ALARM"), None, ("68481", "MDC_ATTR_EVENT_PHASE"),
              ("68482", "MDC_ATTR_ALARM_STATE"), ("68483", "MDC_ATTR_ALARM_INACTIVATION_STATE"),
              ("68484", "MDC_ATTR_ALARM_PRIORITY"), ("68485", "MDC_ATTR_ALERT_TYPE")]


def test_oru_r40_follows_the_pcd04_profile(alerts: list[dict]) -> None:
    for alert in alerts:
        text = decode_hl7(alert_to_oru_r40(alert))
        kinds = [line[:3] for line in text.split("\r")]
        assert kinds == ["MSH", "PID", "PV1", "OBR"] + ["OBX"] * 7, "PCD-04 segment order"
        parsed = segments(alert_to_oru_r40(alert))
        assert parsed["MSH"][0].get(21) == "IHE_PCD_ACM_001", "MSH-21 names the PCD-04 profile"
        assert parsed["OBR"][0].get(4) == "196616"
        for facet, (obx, expected) in enumerate(zip(parsed["OBX"], PCD04_ROWS, strict=True), start=1):
            assert obx.get(4) == f"1.0.0.0.{facet}", "OBX-4 sub-id: the alert's path and its facet"
            if expected:
                assert (obx.get(3, component=1), obx.get(3, component=2)) == expected
        assert parsed["OBX"][0].get(2) == "CWE" and parsed["OBX"][0].get(5, component=3) == "99VS"
        assert {parsed["OBX"][0].get(8, repeat=1), parsed["OBX"][0].get(8, repeat=2)} == {
            {"high": "PH", "medium": "PM", "low": "PL"}[alert["priority"]], "SP"}
        assert parsed["OBX"][3].get(5) in {"off", "inactive", "active", "latched"}
        assert parsed["OBX"][4].get(5) in {"enabled", "audio-paused", "audio-off", "alarm-paused",
                                          "alarm-off", "alert-acknowledged"}


def test_oru_r40_passes_the_hl7apy_v26_structure_check(alerts: list[dict]) -> None:
    """hl7apy (a third-party HL7 v2 library) validates the message strictly against the v2.6
    ORU_R01 structure: HL7 v2.6 defines no ORU_R40 structure, and PCD-04 uses ORU_R01's
    segment grammar, so MSH-9.3 is swapped for the check only."""
    for alert in alerts:
        text = alert_to_oru_r40(alert).decode().replace("ORU^R40^ORU_R40", "ORU^R40^ORU_R01")
        message = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
        assert message.validate()
        assert message.ORU_R01_PATIENT_RESULT.ORU_R01_PATIENT.PID.PID_5.value
    without_name = alert_to_oru_r40(alerts[0]).decode().replace("ORU_R40", "ORU_R01").replace("|^^^^^^U", "")
    with pytest.raises(ValidationError, match="PID_5"):
        parse_message(without_name, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True).validate()


def test_oru_r40_reads_back_with_python_hl7_and_escapes_delimiters(alerts: list[dict]) -> None:
    tricky = {**alerts[-1], "summary": "Bed 12 | SpO2 ^ 91 % & falling ~ see \\ notes"}
    message = hl7.parse(alert_to_oru_r40(tricky).decode())
    assert str(message.segment("MSH")[9]) == "ORU^R40^ORU_R40"
    obx = message.segments("OBX")
    assert len(obx) == 7
    assert message.unescape(str(obx[0][5][0][1])) == tricky["summary"]
    assert str(obx[4][5]) == "alert-acknowledged", "acknowledged alerts are inactivated in PCD-04"


def test_replacing_alert_closes_the_old_flag_and_links_it(alerts: list[dict]) -> None:
    escalated = next(a for a in alerts if a["status"] == "escalated")
    assert escalated["replaces"], "the ward feed escalates by a new alert"
    old, new = (Flag.model_validate(f) for f in alert_to_fhir_flags(escalated))
    assert old.id == escalated["replaces"] and old.status == "inactive"
    assert old.period.end is not None and old.period.start <= old.period.end
    assert any(e.url.endswith("/replaced-by") and e.valueReference.reference == f"Flag/{new.id}"
               for e in old.extension)
    assert new.id == escalated["alert_id"] and new.status == "active"
    assert any(e.url.endswith("/replaces") and e.valueReference.reference == f"Flag/{old.id}"
               for e in new.extension)
    # The first Flag of the episode is not closed by anything else; later statuses of the new
    # alert update only its own Flag.
    assert len(alert_to_fhir_flags(alerts[0])) == 1
    acknowledged = {**escalated, "status": "acknowledged", "event_id": escalated["alert_id"] + "/acknowledged"}
    assert [f["id"] for f in alert_to_fhir_flags(acknowledged)] == [escalated["alert_id"]]


def test_redelivered_alert_gets_the_same_control_id_and_status_changes_a_new_one(alerts: list[dict]) -> None:
    assert alert_to_oru_r40(alerts[0]) == alert_to_oru_r40(dict(alerts[0]))
    assert control_id(alerts[1]["event_id"]) != control_id(alerts[2]["event_id"])
