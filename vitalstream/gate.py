"""The gate of control records (acknowledgements, per-patient settings, oversight, census):
every check a control record must pass, in one module, for the two places it is checked.

1. Where it enters (``check_entry``, called by the forwarders in ``app.py``): the signature
   of a station, admin or front-door key (``vitalstream.signing``), its size, its shape, the
   actor and their role, the ward the user is granted, a settings change's bounds. A record
   refused here is counted and dead-lettered with its reason, and goes no further; one
   that passes is forwarded into ``vitals`` keyed by patient, signed by the worker.
2. Where it is applied (``check_on_vitals``, ``check_ward`` and ``check_acknowledgement``,
   called by ``MonitorStage._take``): a control record on ``vitals`` counts only with a
   worker's signature (so only what step 1 let through, never one written straight onto
   vitals); an acknowledgement only for a patient of the ward it was signed for, by an
   actor whose role may acknowledge, within the control window of its time (step 1 cannot
   know the patient's ward, nor when the record is applied).

The checks are pure (no broker): the stages count and dead-letter what is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from vitalstream.alerts.settings import PatientSettings, SettingsError, apply_settings, check_role
from vitalstream.auth.roles import ActorError, actor_from, may
from vitalstream.ingest.adt import CENSUS_EVENTS
from vitalstream.oversight import Refused as DeskRefused
from vitalstream.oversight import check_actor
from vitalstream.signing import Keyring, SignatureError

# Acknowledgements and settings are small records from stations: anything bigger is refused
# before it is parsed (forwarded into vitals it would exceed the producer's request size).
MAX_CONTROL_BYTES = 65_536
# Who may write acknowledgements, settings and oversight: the station service, and admin tools.
CONTROL_SIGNERS = frozenset({"station", "admin"})
# The census comes from the front doors (HL7 ADT, FHIR Encounter), or an admin tool.
CENSUS_SIGNERS = frozenset({"gateway", "admin"})
# Keys of the control records on vitals: each is taken only with a worker's signature (the
# forwarders in app.py and governance/control.py sign what they checked).
CONTROL_KEYS = frozenset({"ack", "settings", "oversight", "census", "kill_switch", "audit_action",
                          "demographics"})


class Refused(Exception):
    """A control record refused: ``reason`` is the counter's label and the dead letter's."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason)
        self.reason, self.detail = reason, detail


def valid_ack(ack: Any) -> str:
    """An acknowledgement's patient; the actor (checked) and their name written into it."""
    patient_id, alert_id = ack["patient_id"], ack["alert_id"]
    # Checked here, where a bad record is dropped, not in the monitor it would stop.
    if not (isinstance(patient_id, str) and isinstance(alert_id, str)
            and isinstance(ack.get("at_ms"), int) and not isinstance(ack.get("at_ms"), bool)):
        raise TypeError("patient_id and alert_id must be strings, at_ms an integer")
    try:
        actor = actor_from(ack)
    except ActorError as exc:
        raise Refused("actor", str(exc)) from None
    if not may(actor["role"], "acknowledge"):
        raise Refused("role", f"role {actor['role']} may not acknowledge")
    wards = ack.get("actor_wards")
    if not isinstance(wards, list) or ack.get("ward") not in wards:
        raise Refused("ward", "the acknowledging user is not granted the alert's ward")
    ack["actor"], ack["by"] = actor, actor["name"]
    return patient_id


def valid_settings(control: Any) -> str:
    """A settings change's patient: its actor's role may change these settings, and the
    record is within bounds before it reaches any patient's monitor."""
    patient_id = control["patient_id"]
    if not isinstance(patient_id, str) or not isinstance(control["record"], dict):
        raise TypeError("patient_id must be a string and record an object")
    try:
        actor = actor_from(control["record"])
        check_role(control["record"], actor["role"])
    except ActorError as exc:
        raise Refused("actor", str(exc)) from None
    except SettingsError as exc:
        raise Refused("role", str(exc)) from None
    try:
        apply_settings(PatientSettings(), control["record"])
    except SettingsError as exc:
        raise Refused("out_of_bounds", str(exc)) from None
    return patient_id


def valid_oversight(record: Any) -> str:
    """An answer, snooze, disposition or care goal: its shape and actor (role and ward are
    the oversight desk's to check, with the alert in hand)."""
    if not (isinstance(record, dict) and isinstance(record.get("patient_id"), str)
            and isinstance(record.get("type"), str)):
        raise TypeError("patient_id and type must be strings")
    try:
        record["actor"] = actor_from(record)
    except ActorError as exc:
        raise Refused("actor", str(exc)) from None
    return record["patient_id"]


def valid_census(record: Any) -> str:
    """An admission, transfer, update or discharge: its shape."""
    if not (isinstance(record, dict) and isinstance(record.get("patient_id"), str)
            and record.get("event") in CENSUS_EVENTS
            and isinstance(record.get("ward", ""), str) and isinstance(record.get("bed", ""), str)):
        raise TypeError("patient_id, ward and bed must be strings, event a census event")
    return record["patient_id"]


# Each control topic's record check and the keys that may sign it.
VALIDATORS: dict[str, Callable[[Any], str]] = {
    "ack": valid_ack, "settings": valid_settings, "oversight": valid_oversight, "census": valid_census}
SIGNERS: dict[str, frozenset[str]] = {
    "ack": CONTROL_SIGNERS, "settings": CONTROL_SIGNERS, "oversight": CONTROL_SIGNERS, "census": CENSUS_SIGNERS}


def check_entry(keyring: Keyring, source: str, topic: str, key: bytes | None, value: bytes,
                headers: Any) -> tuple[str, dict[str, Any]]:
    """Step 1: a record of the control topic ``source`` ("ack", "settings", "oversight",
    "census") as it arrives: (patient, record) or ``Refused`` with the reason."""
    signers = SIGNERS[source]
    try:
        keyring.verify(topic, key, value, headers, signers)
    except SignatureError as exc:
        raise Refused(str(exc), f"no valid signature of a {' or '.join(sorted(signers))} key") from None
    if len(value) > MAX_CONTROL_BYTES:
        raise Refused("malformed", f"{len(value)} bytes > {MAX_CONTROL_BYTES}")
    try:
        body = orjson.loads(value)
        patient_id = VALIDATORS[source](body)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise Refused("malformed", f"{type(exc).__name__}: {exc}"[:200]) from None
    return patient_id, body


def check_on_vitals(keyring: Keyring, record: Any, body: Mapping[str, Any]) -> None:
    """Step 2, for any record on vitals: one holding a control record must carry a worker's
    signature (``Refused`` with the signature's reason otherwise)."""
    if body.keys() & CONTROL_KEYS:
        try:
            keyring.verify(record.topic, record.key, record.value, record.headers, ("worker",))
        except SignatureError as exc:
            raise Refused(str(exc), "control record on vitals without a worker's signature") from None


def check_ward(ack: Mapping[str, Any], patient_ward: str | None) -> None:
    """Step 2: an acknowledgement signed for one ward about a patient on another is not
    applied (``Refused("ward")``). A patient not (yet) placed on a ward passes."""
    if patient_ward and ack.get("ward") != patient_ward:
        raise Refused("ward", "acknowledgement for a patient of another ward")


def check_acknowledgement(ack: Mapping[str, Any], now_ms: int, window_s: float) -> tuple[dict[str, str] | None, int]:
    """Step 2: the actor of an acknowledgement (checked again against the roles that may
    acknowledge; None for a legacy one with a name only) and its time, or ``Refused``
    (``ack_no_actor``, ``ack_role``, ``ack_stale_or_future``: a signed-in user's
    acknowledgement replayed later, or from a wrong clock)."""
    actor = ack.get("actor")
    if actor is not None:
        try:
            actor = check_actor(actor if isinstance(actor, dict) else None)
        except DeskRefused as exc:
            raise Refused(f"ack_{exc}", "the actor may not acknowledge") from None
    at_ms = int(ack.get("at_ms", now_ms))
    if actor is not None and abs(now_ms - at_ms) > window_s * 1000:
        raise Refused("ack_stale_or_future", "outside the control window")
    return actor, at_ms
