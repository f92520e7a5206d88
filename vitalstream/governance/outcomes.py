"""The outcomes feed: what happened to the patients (rapid-response calls, ICU transfers,
deaths), to join with the alerts. CSV or FHIR R4.

CSV, one row per event or per patient (header names, any order)::

    patient_id,kind,time,ward,age_years,sex
    p-0001,icu_transfer,2026-03-15T14:20:00Z,4B,71,female
    p-0002,,,4B,54,male          <- demographics only

``kind`` is ``rapid_response``, ``icu_transfer``, ``death`` or ``other``; ``time`` ISO 8601
(UTC unless given) or epoch ms; ``sex`` female/male (F/M).

FHIR: a Bundle, or NDJSON of resources. ``Patient`` gives birthDate and gender;
``Encounter`` gives an event: ``hospitalization.dischargeDisposition`` code ``exp``
(expired) is a death at ``period.end``; a location or ``class``/``serviceType``
naming intensive care (ICU) is an ICU transfer at ``period.start``; a ``type`` coded
``rapid-response`` is a rapid-response call. ``Condition`` (e.g. sepsis, SNOMED
91302008) is an event of kind ``other`` at ``onsetDateTime`` (else ``recordedDate``).
The patient is the ``subject`` reference ``Patient/<id>``.

A row or resource that cannot be read is refused with its reason, and counted; the
rest are used.

>>> feed = read_csv_text("patient_id,kind,time\\np1,death,1000\\np2,nap,5\\n")
>>> [(e.patient_id, e.kind, e.event_ms) for e in feed.events], feed.refused
([('p1', 'death', 1000)], [('line 3', 'unknown kind nap')])
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from vitalstream.validation.labels import Event

KINDS = ("rapid_response", "icu_transfer", "death", "other")
SEX = {"f": "female", "female": "female", "m": "male", "male": "male"}
DAY_S = 86400.0


@dataclasses.dataclass
class Outcomes:
    events: list[Event] = dataclasses.field(default_factory=list)
    demographics: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    refused: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    birth_dates: dict[str, dt.date] = dataclasses.field(default_factory=dict)

    def refused_counts(self) -> dict[str, int]:
        return dict(Counter(reason.split(":")[0] for _, reason in self.refused))

    def merge(self, other: Outcomes) -> Outcomes:
        self.events += other.events
        for patient_id, who in other.demographics.items():
            self.demographics.setdefault(patient_id, {}).update(who)
        self.refused += other.refused
        self.birth_dates.update(other.birth_dates)
        return self

    def age_at(self, reference_ms: int) -> None:
        """Fill in age_years from FHIR birth dates, as of ``reference_ms``."""
        on = dt.datetime.fromtimestamp(reference_ms / 1000, dt.UTC).date()
        for patient_id, born in self.birth_dates.items():
            years = on.year - born.year - ((on.month, on.day) < (born.month, born.day))
            self.demographics.setdefault(patient_id, {})["age_years"] = float(years)


def parse_time_ms(text: Any) -> int:
    """Epoch ms from digits or ISO 8601 (UTC unless given); ValueError otherwise."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    text = str(text).strip()
    if text.isdigit():
        return int(text)
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


def read_csv_text(text: str) -> Outcomes:
    out = Outcomes()
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "patient_id" not in reader.fieldnames:
        out.refused.append(("header", "no patient_id column"))
        return out
    for number, row in enumerate(reader, start=2):
        where = f"line {number}"
        patient_id = (row.get("patient_id") or "").strip()
        if not patient_id:
            out.refused.append((where, "no patient_id"))
            continue
        who: dict[str, Any] = {}
        try:
            if (row.get("age_years") or "").strip():
                age = float(row["age_years"])
                if not 0 <= age < 130:
                    raise ValueError
                who["age_years"] = age
        except ValueError:
            out.refused.append((where, f"age_years not a plausible age: {row.get('age_years')!r}"))
            continue
        sex = (row.get("sex") or "").strip().lower()
        if sex:
            if sex not in SEX:
                out.refused.append((where, f"sex must be female or male: {sex!r}"))
                continue
            who["sex"] = SEX[sex]
        kind, time_text = (row.get("kind") or "").strip(), (row.get("time") or "").strip()
        if kind or time_text:
            if kind not in KINDS:
                out.refused.append((where, f"unknown kind {kind}"))
                continue
            try:
                event_ms = parse_time_ms(time_text)
            except ValueError:
                out.refused.append((where, f"time not ISO 8601 or epoch ms: {time_text!r}"))
                continue
            out.events.append(Event(patient_id, (row.get("ward") or "").strip(), "", kind, event_ms))
        if who:
            out.demographics.setdefault(patient_id, {}).update(who)
    return out


def _codes(concept: Any) -> list[str]:
    if not isinstance(concept, Mapping):
        return []
    found = [str(c.get("code", "")) for c in concept.get("coding") or [] if isinstance(c, Mapping)]
    found += [str(c.get("display", "")) for c in concept.get("coding") or [] if isinstance(c, Mapping)]
    return [*found, str(concept.get("text", ""))]


def _subject(resource: Mapping[str, Any]) -> str:
    reference = (resource.get("subject") or {}).get("reference", "") if isinstance(resource.get("subject"), Mapping) else ""
    if not isinstance(reference, str) or not reference.startswith("Patient/") or len(reference) <= 8:
        raise ValueError("subject is not a Patient/<id> reference")
    return reference[8:]


def _is_icu(words: Iterable[str]) -> bool:
    return any("icu" in w.lower().split() or "intensive care" in w.lower() or w.upper() == "ICU" for w in words)


def read_fhir_resource(resource: Any, where: str, out: Outcomes) -> None:
    if not isinstance(resource, Mapping):
        out.refused.append((where, "not a resource object"))
        return
    kind = resource.get("resourceType")
    try:
        if kind == "Patient":
            patient_id = str(resource.get("id") or "")
            if not patient_id:
                raise ValueError("Patient without id")
            who: dict[str, Any] = {}
            if resource.get("gender") in ("female", "male"):
                who["sex"] = resource["gender"]
            if resource.get("birthDate"):
                out.birth_dates[patient_id] = dt.date.fromisoformat(str(resource["birthDate"])[:10])
            out.demographics.setdefault(patient_id, {}).update(who)
        elif kind == "Encounter":
            patient_id = _subject(resource)
            period = resource.get("period") or {}
            disposition = _codes((resource.get("hospitalization") or {}).get("dischargeDisposition"))
            places = [str((loc.get("location") or {}).get("display", "")) for loc in resource.get("location") or []
                      if isinstance(loc, Mapping)]
            words = [*places, *_codes(resource.get("class") if isinstance(resource.get("class"), Mapping) and
                                       "coding" in resource["class"] else {"coding": [resource.get("class") or {}]}),
                     *_codes(resource.get("serviceType"))]
            types = [c for t in resource.get("type") or [] for c in _codes(t)]
            if "exp" in disposition:
                event = ("death", period.get("end"))
            elif _is_icu(words):
                event = ("icu_transfer", period.get("start"))
            elif any(c.lower() in ("rapid-response", "rapid_response") for c in types):
                event = ("rapid_response", period.get("start"))
            else:
                raise ValueError("Encounter is not a death, an ICU transfer or a rapid-response call")
            if not event[1]:
                raise ValueError(f"Encounter ({event[0]}) has no period time")
            out.events.append(Event(patient_id, "", "", event[0], parse_time_ms(event[1])))
        elif kind == "Condition":
            patient_id = _subject(resource)
            when = resource.get("onsetDateTime") or resource.get("recordedDate")
            if not when:
                raise ValueError("Condition without onsetDateTime or recordedDate")
            out.events.append(Event(patient_id, "", "", "other", parse_time_ms(when)))
        else:
            raise ValueError(f"resource type {kind!r} is not read")
    except (ValueError, TypeError, AttributeError) as exc:
        out.refused.append((where, str(exc)))


def read_fhir_text(text: str) -> Outcomes:
    out = Outcomes()
    stripped = text.strip()
    documents: list[tuple[str, Any]] = []
    try:
        document = orjson.loads(stripped)
        if isinstance(document, Mapping) and document.get("resourceType") == "Bundle":
            documents = [(f"entry {i}", (e or {}).get("resource")) for i, e in enumerate(document.get("entry") or [])]
        else:
            documents = [("document", document)]
    except orjson.JSONDecodeError:
        for number, line in enumerate(stripped.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                documents.append((f"line {number}", orjson.loads(line)))
            except orjson.JSONDecodeError:
                out.refused.append((f"line {number}", "not JSON"))
    for where, resource in documents:
        read_fhir_resource(resource, where, out)
    return out


def read_outcomes(paths: Iterable[str]) -> Outcomes:
    """Every file given: ``.csv`` as CSV, anything else as FHIR JSON or NDJSON."""
    out = Outcomes()
    for path in paths:
        text = Path(path).read_text(encoding="utf-8")
        out.merge(read_csv_text(text) if path.lower().endswith(".csv") else read_fhir_text(text))
    return out
