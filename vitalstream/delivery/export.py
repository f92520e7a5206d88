"""Alerts for EHRs and alarm managers: a FHIR R4 ``Flag`` and an HL7 v2 ``ORU^R40``
(IHE PCD-04 Report Alert). Pure functions of one alert message (``Alert.to_dict()``).

Why ``Flag``: an alert is a warning about a patient that stays true for a while (open,
acknowledged, resolved) and should be shown prominently; Flag is that resource, its
``status`` and ``period`` carry the lifecycle, and the standard ``flag-priority``
extension has exactly the IEC 60601-1-8 levels (PL, PM, PH). ``RiskAssessment`` states a
prediction, not something to act on, and ``Communication`` records one delivery to one
recipient, which is the alarm manager's job, not ours. The NEWS2 total and the model
risk travel as extensions and in the text.

>>> alert = {"alert_id": "al-1", "event_id": "al-1/raised", "patient_id": "p1", "ward": "4B",
...          "bed": "12", "kind": "clinical", "priority": "high", "status": "raised",
...          "summary": "Bed 12, Ward 4B: NEWS2 8 (high).", "device_time_ms": 1773569700000,
...          "payload": {"condition": "clinical", "news2": {"total": 8}}}
>>> alert_to_fhir_flag(alert)["extension"][0]["valueCodeableConcept"]["coding"][0]["code"]
'PH'
>>> alert_to_oru_r40(alert).split(b"\\r")[0].split(b"|")[8]
b'ORU^R40^ORU_R40'

A new alert that replaces another (escalation, acknowledgement expired) gives two Flags:
the replaced one closed, then the new one, which names it (`alert_to_fhir_flags`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

VITALSTREAM_SYSTEM = "https://vitalstream.example.org/fhir"
FLAG_PRIORITY_URL = "http://hl7.org/fhir/StructureDefinition/flag-priority"
FLAG_PRIORITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/flag-priority-code"
FLAG_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/flag-category"
SNOMED_SYSTEM = "http://snomed.info/sct"
SNOMED_NEWS2_TOTAL = "1104051000000101"

# IEC 60601-1-8 priority -> flag-priority code and PCD-04 MDC_ATTR_ALARM_PRIORITY value.
PRIORITY_CODES: dict[str, tuple[str, str]] = {
    "high": ("PH", "High priority"), "medium": ("PM", "Medium priority"),
    "low": ("PL", "Low priority"),
}
# Alert status -> PCD-04 event phase, alarm state, inactivation state.
PCD04_STATES: dict[str, tuple[str, str, str]] = {
    "raised": ("start", "active", "enabled"),
    "escalated": ("escalate", "active", "enabled"),
    "reraised": ("start", "active", "enabled"),
    "acknowledged": ("update", "active", "alert-acknowledged"),
    "resolved": ("end", "inactive", "enabled"),
    # Oversight (vitalstream/oversight): who is called, what was answered, the census.
    "called": ("escalate", "active", "enabled"),
    "answered": ("update", "active", "alert-acknowledged"),
    "snoozed": ("update", "active", "alarm-paused"),
    "snooze_ended": ("update", "active", "enabled"),
    "transferred": ("update", "active", "enabled"),
    "transferred_out": ("end", "inactive", "enabled"),
    "discharged": ("end", "inactive", "enabled"),
}
# IEEE 11073-10101 alert attribute terms used by PCD-04 OBX-3.
MDC_EVT_ALARM = ("196616", "MDC_EVT_ALARM")
MDC_ATTR_EVENT_PHASE = ("68481", "MDC_ATTR_EVENT_PHASE")
MDC_ATTR_ALARM_STATE = ("68482", "MDC_ATTR_ALARM_STATE")
MDC_ATTR_ALARM_INACTIVATION_STATE = ("68483", "MDC_ATTR_ALARM_INACTIVATION_STATE")
MDC_ATTR_ALARM_PRIORITY = ("68484", "MDC_ATTR_ALARM_PRIORITY")
MDC_ATTR_ALERT_TYPE = ("68485", "MDC_ATTR_ALERT_TYPE")
LOCAL_CODE_SYSTEM = "99VS"  # HL7 local coding systems start with 99


def _iso(ms: int) -> str:
    moment = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _hl7_time(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y%m%d%H%M%S") + "+0000"


def _ms(value: Any, default: int) -> int:
    if isinstance(value, dict):
        value = value.get("ms")
    return int(value) if isinstance(value, int | float) else default


# Statuses of an alert that replaces another one: its first message.
REPLACING_STATUSES = frozenset({"escalated", "reraised"})
REPLACES_URL = f"{VITALSTREAM_SYSTEM}/StructureDefinition/replaces"
REPLACED_BY_URL = f"{VITALSTREAM_SYSTEM}/StructureDefinition/replaced-by"


def alert_to_fhir_flags(alert: dict[str, Any]) -> list[dict[str, Any]]:
    """The Flags one alert message updates: for the first message of an alert that replaces
    another, the replaced alert's Flag closed (`replaced_flag`) and then the new one; else
    the alert's own Flag. Publish them in this order."""
    flag = alert_to_fhir_flag(alert)
    if alert.get("replaces") and alert["status"] in REPLACING_STATUSES:
        return [replaced_flag(alert), flag]
    return [flag]


def replaced_flag(alert: dict[str, Any]) -> dict[str, Any]:
    """The last version of the Flag of the alert that ``alert`` replaces: status inactive,
    its period ended when the new alert began, and a link to the new Flag. A receiver that
    tracks Flags by id then holds one active Flag for the patient, not two. What the old
    alert shares with the new one (patient, place, condition, episode start) is repeated,
    because a Flag version is a whole resource."""
    old_id = str(alert["replaces"])
    payload = alert.get("payload") or {}
    end = _iso(int(alert["device_time_ms"]))
    start_ms = _ms(payload.get("episode_start"), int(alert["device_time_ms"]))
    category = "clinical" if alert["kind"] == "clinical" else "safety"
    condition = str(payload.get("condition") or alert["kind"])
    return {
        "resourceType": "Flag",
        "id": old_id,
        "meta": {"versionId": "replaced"},
        "identifier": [{"system": f"{VITALSTREAM_SYSTEM}/alert-id", "value": old_id}],
        "extension": [
            {"url": f"{VITALSTREAM_SYSTEM}/StructureDefinition/alert-status", "valueCode": "replaced"},
            {"url": f"{VITALSTREAM_SYSTEM}/StructureDefinition/location",
             "valueString": f"Ward {alert['ward']}, Bed {alert['bed']}"},
            {"url": REPLACED_BY_URL, "valueReference": {"reference": f"Flag/{alert['alert_id']}"}},
        ],
        "status": "inactive",
        "category": [{"coding": [{"system": FLAG_CATEGORY_SYSTEM, "code": category}]}],
        "code": {"coding": [{"system": f"{VITALSTREAM_SYSTEM}/alert-condition", "code": condition}],
                 "text": f"Replaced by alert {alert['alert_id']} ({alert['status']})"},
        "subject": {"identifier": {"system": f"{VITALSTREAM_SYSTEM}/patient-id",
                                   "value": alert["patient_id"]}},
        "period": {"start": min(_iso(start_ms), end), "end": end},
        "author": {"display": "vitalstream"},
    }


def alert_to_fhir_flag(alert: dict[str, Any]) -> dict[str, Any]:
    """One alert message as a FHIR R4 Flag (JSON). The Flag's id is the alert id, so each
    status change updates the same resource; ``meta.versionId`` is the status. An alert
    that replaces another names the replaced Flag (extension ``replaces``)."""
    payload = alert.get("payload") or {}
    priority_code, priority_text = PRIORITY_CODES.get(alert["priority"], ("PN", "No alarm"))
    start_ms = _ms(payload.get("episode_start"), int(alert["device_time_ms"]))
    period: dict[str, str] = {"start": _iso(start_ms)}
    if alert["status"] in ("resolved", "transferred_out", "discharged"):
        period["end"] = _iso(int(alert["device_time_ms"]))
    extensions: list[dict[str, Any]] = [{
        "url": FLAG_PRIORITY_URL,
        "valueCodeableConcept": {"coding": [{"system": FLAG_PRIORITY_SYSTEM, "code": priority_code,
                                             "display": priority_text}]},
    }, {
        "url": f"{VITALSTREAM_SYSTEM}/StructureDefinition/alert-status",
        "valueCode": alert["status"],
    }, {
        "url": f"{VITALSTREAM_SYSTEM}/StructureDefinition/location",
        "valueString": f"Ward {alert['ward']}, Bed {alert['bed']}",
    }]
    news2 = payload.get("news2") or {}
    if isinstance(news2.get("total"), int):
        extensions.append({"url": f"{VITALSTREAM_SYSTEM}/StructureDefinition/news2-total",
                           "valueInteger": news2["total"]})
    risk = payload.get("risk") or {}
    if isinstance(risk.get("value"), int | float):
        extensions.append({"url": f"{VITALSTREAM_SYSTEM}/StructureDefinition/risk",
                           "valueDecimal": round(float(risk["value"]), 4)})
    if alert.get("replaces"):
        extensions.append({"url": REPLACES_URL,
                           "valueReference": {"reference": f"Flag/{alert['replaces']}"}})
    ack = payload.get("ack") or None
    if ack and ack.get("by"):
        extensions.append({"url": f"{VITALSTREAM_SYSTEM}/StructureDefinition/acknowledged-by",
                           "valueString": str(ack["by"])})
    oversight = payload.get("oversight") or None
    if oversight and oversight.get("holder"):
        extensions.append({"url": f"{VITALSTREAM_SYSTEM}/StructureDefinition/escalation-holder",
                           "valueString": str(oversight["holder"])})
    category = "clinical" if alert["kind"] == "clinical" else "safety"
    condition = str(payload.get("condition") or alert["kind"])
    return {
        "resourceType": "Flag",
        "id": alert["alert_id"],
        "meta": {"versionId": alert["status"]},
        "identifier": [{"system": f"{VITALSTREAM_SYSTEM}/alert-id", "value": alert["alert_id"]}],
        "extension": extensions,
        "status": "inactive" if alert["status"] in ("resolved", "transferred_out", "discharged") else "active",
        "category": [{"coding": [{"system": FLAG_CATEGORY_SYSTEM, "code": category}]}],
        "code": {"coding": [{"system": f"{VITALSTREAM_SYSTEM}/alert-condition", "code": condition}],
                 "text": alert["summary"]},
        "subject": {"identifier": {"system": f"{VITALSTREAM_SYSTEM}/patient-id",
                                   "value": alert["patient_id"]}},
        "period": period,
        "author": {"display": "vitalstream"},
    }


def _escape(text: str) -> str:
    """HL7 v2 escapes for the default delimiters |^~\\&, and no segment breaks."""
    out = text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\")
    out = out.replace("~", "\\R\\").replace("&", "\\T\\")
    return out.replace("\r", " ").replace("\n", " ")


def control_id(event_id: str) -> str:
    """MSH-10 from the event id: a redelivered alert makes the same control id, so the
    receiver can drop the duplicate."""
    return hashlib.blake2b(event_id.encode(), digest_size=10).hexdigest()


# PID-5 is required by the v2 PID segment and by PCD-04, but alerts carry no patient name
# (no PHI beyond what a nurse needs): the name is sent as "unspecified" (XPN-7 name type U),
# which a receiver does not take for a name, and PID-3 identifies the patient.
UNSPECIFIED_NAME = "^^^^^^U"
# OBX-4 facets of a PCD-04 alert, after the source's containment path (MDS.VMD.CHAN.METRIC,
# 1.0.0.0 here: the alert comes from vitalstream itself, not a device channel).
ALERT_PATH = "1.0.0.0"
FACET_EVENT, FACET_SOURCE, FACET_PHASE, FACET_STATE, FACET_INACTIVATION, FACET_PRIORITY, FACET_TYPE = range(1, 8)
MDC_ATTR_ALERT_SOURCE = ("68480", "MDC_ATTR_ALERT_SOURCE")


def alert_to_oru_r40(alert: dict[str, Any], sending_facility: str = "HOSPITAL") -> bytes:
    """One alert message as HL7 v2.6 ORU^R40 (IHE PCD-04), segments ended by '\\r'.

    Segments MSH, PID (PID-3 id, PID-5 unspecified name), PV1, OBR (OBR-4 MDC_EVT_ALARM),
    then the PCD-04 OBX rows in the profile's order, OBX-4 ``1.0.0.0.<facet>``:
    .1 event identification (MDC_EVT_ALARM, OBX-5 the condition with the summary as its
    text, OBX-8 priority~alert type), .2 source (the NEWS2 total coded in SNOMED CT, else
    MDC_ATTR_ALERT_SOURCE), .3 MDC_ATTR_EVENT_PHASE, .4 MDC_ATTR_ALARM_STATE,
    .5 MDC_ATTR_ALARM_INACTIVATION_STATE, .6 MDC_ATTR_ALARM_PRIORITY (PH/PM/PL),
    .7 MDC_ATTR_ALERT_TYPE (SP physiological, ST technical)."""
    payload = alert.get("payload") or {}
    time_ms = int(alert["device_time_ms"])
    phase, state, inactivation = PCD04_STATES.get(alert["status"], ("update", "active", "enabled"))
    priority = PRIORITY_CODES.get(alert["priority"], ("PN", ""))[0]
    alert_type = "SP" if alert["kind"] == "clinical" else "ST"
    condition = _escape(str(payload.get("condition") or alert["kind"]))
    event_id = str(alert.get("event_id") or f"{alert['alert_id']}/{alert['status']}")
    stamp = _hl7_time(time_ms)
    alert_id = _escape(alert["alert_id"])
    segments = [
        "|".join(["MSH", "^~\\&", "VITALSTREAM", _escape(sending_facility), "", "", stamp, "",
                  "ORU^R40^ORU_R40", control_id(event_id), "P", "2.6", "", "", "AL", "NE", "",
                  "UNICODE UTF-8", "", "", "IHE_PCD_ACM_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.4.1^ISO"]),
        "|".join(["PID", "", "", f"{_escape(alert['patient_id'])}^^^VITALSTREAM^PI", "", UNSPECIFIED_NAME]),
        "|".join(["PV1", "", "I", f"{_escape(alert['ward'])}^^{_escape(alert['bed'])}"]),
        "|".join(["OBR", "1", f"{alert_id}^VITALSTREAM", f"{alert_id}^VITALSTREAM",
                  f"{MDC_EVT_ALARM[0]}^{MDC_EVT_ALARM[1]}^MDC", "", "", stamp]),
    ]

    def obx(facet: int, value_type: str, code: str, value: str, interpretation: str = "") -> str:
        return "|".join(["OBX", str(facet), value_type, code, f"{ALERT_PATH}.{facet}", value, "", "",
                         interpretation, "", "", "F", "", "", stamp])

    mdc = "{}^{}^MDC".format
    news2 = payload.get("news2") or {}
    if isinstance(news2.get("total"), int):
        source = ("NM", f"{SNOMED_NEWS2_TOTAL}^NEWS2 total score^SCT", str(news2["total"]))
    else:
        source = ("ST", mdc(*MDC_ATTR_ALERT_SOURCE), condition)
    segments += [
        obx(FACET_EVENT, "CWE", mdc(*MDC_EVT_ALARM),
            f"{condition}^{_escape(alert['summary'])}^{LOCAL_CODE_SYSTEM}", f"{priority}~{alert_type}"),
        obx(FACET_SOURCE, *source),
        obx(FACET_PHASE, "ST", mdc(*MDC_ATTR_EVENT_PHASE), phase),
        obx(FACET_STATE, "ST", mdc(*MDC_ATTR_ALARM_STATE), state),
        obx(FACET_INACTIVATION, "ST", mdc(*MDC_ATTR_ALARM_INACTIVATION_STATE), inactivation),
        obx(FACET_PRIORITY, "ST", mdc(*MDC_ATTR_ALARM_PRIORITY), priority),
        obx(FACET_TYPE, "ST", mdc(*MDC_ATTR_ALERT_TYPE), alert_type),
    ]
    # The escalation (holder, step, why, answer: local codes) after the seven PCD-04 facets.
    for facet, (value_type, code, value) in enumerate(escalation_rows(payload.get("oversight")),
                                                      start=FACET_TYPE + 1):
        segments.append(obx(facet, value_type, code, value))
    return ("\r".join(segments) + "\r").encode("utf-8")


def escalation_rows(oversight: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    """PCD-04 OBX rows of the escalation (local codes, 99VS): the responder who holds the
    alert, the step of the ward's chain, why it was passed on last, and the answer."""
    if not oversight:
        return []
    rows = [("ST", f"ESCALATION_HOLDER^Responder holding the alert^{LOCAL_CODE_SYSTEM}",
             _escape(str(oversight.get("holder") or ""))),
            ("NM", f"ESCALATION_STEP^Step of the escalation chain^{LOCAL_CODE_SYSTEM}",
             str(int(oversight.get("step") or 0)))]
    called = [h for h in oversight.get("history") or () if h.get("event") == "called"]
    if called:
        rows.append(("ST", f"ESCALATION_REASON^Why the alert was passed on^{LOCAL_CODE_SYSTEM}",
                     _escape(str(called[-1].get("reason") or ""))))
    answer = oversight.get("answer") or None
    if answer:
        rows.append(("ST", f"ALERT_ANSWER^Answer to the alert^{LOCAL_CODE_SYSTEM}",
                     _escape(f"{answer.get('reason')}^{answer.get('user_id')}")))
    return rows
