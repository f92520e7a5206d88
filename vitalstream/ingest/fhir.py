"""FHIR R4 vital-signs Observations (alone or in a Bundle) -> canonical samples.

Reads the decoded JSON directly, checking every type on the way, so no shape of input can
raise: a field of the wrong type is an ``invalid_fhir`` rejection with its path. Bundles of
type collection, batch and transaction are read; Patient, Encounter, Location and Device
entries in the same Bundle, and resources contained in an Observation (``#id``), resolve the
references of its Observations; a conditional reference (``Patient?identifier=system|value``)
gives the identifier it searches by. A resource this parser would read that carries a
``modifierExtension`` (or ``implicitRules``) is refused (``unknown_modifier``): FHIR says an
element that changes the meaning of a resource and is not understood stops its processing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import orjson

from vitalstream.ingest import MAX_MESSAGE_BYTES
from vitalstream.ingest import codes as codes_table
from vitalstream.ingest.codes import (
    EUI64_SYSTEM,
    LOINC_BP_PANELS,
    LOINC_INHALED_O2_CONCENTRATION,
    LOINC_INHALED_O2_FLOW,
    LOINC_SYSTEM,
    LOINC_VITAL_SIGNS_PANEL,
    MDC_SYSTEM,
    UCUM_SYSTEM,
    declared_unit,
    mdc_term,
    parameter_for_loinc,
)
from vitalstream.ingest.normalise import (
    PLAUSIBILITY,
    ObservationError,
    canonical_value,
    unit_conversion,
)
from vitalstream.ingest.result import IngestResult, Rejection, technical_event
from vitalstream.ingest.times import MAX_AHEAD_MS, fhir_time_ms
from vitalstream.samples import CANONICAL_UNITS, Sample

BUNDLE_TYPES = frozenset({"collection", "batch", "transaction"})
# Observation.status values whose result must not reach a patient's chart.
IGNORED_STATUSES = frozenset({"entered-in-error", "cancelled"})
USABLE_STATUSES = frozenset({"final", "amended", "corrected", "preliminary", "registered"})
# Air is 21 % oxygen: a higher inspired fraction means supplemental oxygen.
AIR_O2_PCT = 21.0
_REFERENCED_TYPES = frozenset({"Patient", "Encounter", "Location", "Device"})
# Elements that change the meaning of what holds them (FHIR "isModifier"); vitalstream knows
# no modifier extension, so any one present means "do not process" (the FHIR rule).
_MODIFIER_KEYS = ("modifierExtension", "implicitRules")


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def parse_fhir(raw: bytes, received_ms: int) -> IngestResult:
    """An Observation or a Bundle (collection, batch, transaction) -> samples, technical
    events, or a rejection."""
    result = IngestResult(format="fhir")
    try:
        # A UTF-8 byte-order mark (written by .NET and Windows clients) is not JSON but is no
        # content either: RFC 8259 lets a parser ignore it.
        document = orjson.loads(raw[3:] if raw[:3] == b"\xef\xbb\xbf" else raw)
    except orjson.JSONDecodeError as exc:
        result.rejection = Rejection("not_json", str(exc))
        return result
    return parse_fhir_resource(document, received_ms)


def parse_fhir_resource(document: Any, received_ms: int) -> IngestResult:
    """The same for an already decoded resource."""
    result = IngestResult(format="fhir")
    if not isinstance(document, dict):
        result.rejection = Rejection("invalid_fhir", "a FHIR resource must be a JSON object")
        return result
    observations, index = _observations(document, result)
    if result.rejection is not None:
        return result
    try:
        for number, observation in enumerate(observations):
            _observation(observation, number, index, received_ms, result)
    except ObservationError as exc:
        return IngestResult(format="fhir", rejection=Rejection(exc.reason, exc.detail),
                            ignored=result.ignored)
    if not result.samples and not result.technical:
        result.rejection = Rejection(
            "no_observations", f"no mapped vital-sign observation ({result.ignored} ignored)")
    return result


def _observations(document: dict[str, Any], result: IngestResult) -> tuple[list[Any], dict[str, dict[str, Any]]]:
    """The Observations of a resource (itself, or a Bundle's) and the Bundle's index of
    resources by fullUrl and by type/id; sets ``result.rejection`` (and counts the entries
    of other types as ignored) as it reads."""
    resource_type = document.get("resourceType")
    index: dict[str, dict[str, Any]] = {}
    if resource_type == "Observation":
        return [document], index
    if resource_type != "Bundle":
        result.rejection = Rejection(
            "unsupported_resource", f"resourceType {resource_type!r}; expected Observation or Bundle")
        return [], index
    bundle_type = document.get("type")
    if not isinstance(bundle_type, str) or bundle_type not in BUNDLE_TYPES:
        result.rejection = Rejection(
            "unsupported_resource", f"Bundle type {bundle_type!r}; expected one of "
            f"{', '.join(sorted(BUNDLE_TYPES))}")
        return [], index
    observations = []
    # (_obj and _text written out: this loop runs for every entry of every Bundle)
    for position, entry in enumerate(_items(document.get("entry"))):
        entry = entry if isinstance(entry, dict) else {}
        resource = entry.get("resource")
        resource = resource if isinstance(resource, dict) else {}
        kind, resource_id, full_url = resource.get("resourceType"), resource.get("id"), entry.get("fullUrl")
        kind = kind.strip() if isinstance(kind, str) else ""
        resource_id = resource_id.strip() if isinstance(resource_id, str) else ""
        full_url = full_url.strip() if isinstance(full_url, str) else ""
        if full_url:
            index[full_url] = resource
        if kind and resource_id:
            index[f"{kind}/{resource_id}"] = resource
        if "modifierExtension" in entry and (kind == "Observation" or kind in _REFERENCED_TYPES):
            result.rejection = Rejection("unknown_modifier", f"Bundle.entry[{position}] ({kind}) has "
                                         "a modifierExtension that is not understood")
            return [], index
        if kind == "Observation":
            observations.append(resource)
        elif kind not in _REFERENCED_TYPES:
            result.ignored += 1
    return observations, index


def _codes(concept: Any) -> list[tuple[str, str]]:
    return [(_text(_obj(c).get("system")), _text(_obj(c).get("code")))
            for c in _items(_obj(concept).get("coding"))]


def _concept_parameter(concept: Any, codes: list[tuple[str, str]] | None = None) -> tuple[str, str] | None:
    """(parameter, source code) of a CodeableConcept (or of its ``codes``, already read):
    LOINC first, else an MDC coding, else a coding the site code table maps."""
    codes = _codes(concept) if codes is None else codes
    for system, code in codes:
        if system == LOINC_SYSTEM and parameter_for_loinc(code):
            return str(parameter_for_loinc(code)), f"LOINC:{code}"
    for system, code in codes:
        term = mdc_term(code) if system == MDC_SYSTEM else None
        if term is not None:
            return term.parameter, f"MDC:{term.code}"
    site_codes = codes_table.site_table()
    if site_codes.observations:
        for system, code in codes:  # a vendor code the site's code table maps
            site = site_codes.parameter(system, code) if system and code else None
            if site is not None:
                return site, f"{system}:{code}"
    return None


def _has_loinc(concept: Any, wanted: str) -> bool:
    return (LOINC_SYSTEM, wanted) in _codes(concept)


def _check_modifiers(holder: dict[str, Any], where: str) -> None:
    for key in _MODIFIER_KEYS:
        if key in holder:
            raise ObservationError("unknown_modifier", f"{where} has {key}, which vitalstream does "
                                   "not understand, so it is not processed")


def _resolve(reference: Any, index: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The resource a reference names in the Bundle or among the Observation's contained
    resources; {} when it is not there. A found resource with a modifier is refused."""
    target = _text(_obj(reference).get("reference"))
    resource = index.get(target, {}) if target else {}
    if resource:
        _check_modifiers(resource, f"{_text(resource.get('resourceType')) or 'resource'} {target}")
    return resource


def _conditional_identifier(reference: Any, resource_type: str) -> str:
    """The identifier value of a conditional reference ``Type?identifier=[system|]value``."""
    target = _text(_obj(reference).get("reference"))
    kind, question, query = target.partition("?")
    if not question or kind.rsplit("/", 1)[-1] != resource_type:
        return ""
    searched = parse_qs(query).get("identifier", [""])[0]
    return searched.rsplit("|", 1)[-1].strip()


def _identifier(resource: dict[str, Any]) -> str:
    """The MR identifier of a resource when it has one, else its first identifier."""
    identifiers = [_obj(i) for i in _items(resource.get("identifier"))]
    for identifier in identifiers:
        if ("MR" in {code for _, code in _codes(identifier.get("type"))}
                and _text(identifier.get("value"))):
            return _text(identifier.get("value"))
    for identifier in identifiers:
        if _text(identifier.get("value")):
            return _text(identifier.get("value"))
    return ""


def _patient_id(subject: Any, index: dict[str, dict[str, Any]]) -> str:
    """subject: a logical identifier, a Patient in the Bundle (its MR identifier, else its
    id), or the id in a literal 'Patient/<id>' reference."""
    subject = _obj(subject)
    logical = _text(_obj(subject.get("identifier")).get("value"))
    if logical:
        return logical
    patient = _resolve(subject, index)
    if patient.get("resourceType") == "Patient":
        return _identifier(patient) or _text(patient.get("id"))
    searched = _conditional_identifier(subject, "Patient")
    if searched:
        return searched
    parts = _text(subject.get("reference")).split("?", 1)[0].split("/")
    if "Patient" in parts[:-1]:
        return parts[parts.index("Patient") + 1]
    return ""


def _location(encounter_reference: Any, index: dict[str, dict[str, Any]]) -> tuple[str, str]:
    """Ward and bed from the Encounter's current Location and its partOf chain, by each
    Location's physicalType (wa ward, ro room, bd bed)."""
    encounter = _resolve(encounter_reference, index)
    places: dict[str, str] = {}
    for stay in _items(encounter.get("location")):
        location = _resolve(_obj(stay).get("location"), index)
        for _ in range(6):  # bed -> room -> ward -> building: a short chain, never a loop
            if not location:
                break
            kinds = {code for _, code in _codes(location.get("physicalType"))}
            name = _text(location.get("name")) or _text(location.get("id"))
            for kind in kinds & {"wa", "ro", "bd"}:
                places.setdefault(kind, name)
            location = _resolve(location.get("partOf"), index)
    room, bed = places.get("ro", ""), places.get("bd", "")
    return places.get("wa", ""), (f"{room}-{bed}" if room and bed else bed or room)


def _device_id(device_reference: Any, index: dict[str, dict[str, Any]]) -> str:
    """The device's EUI-64 identifier when it has one, else its first identifier, else its
    id (a Device in the Bundle or contained), else what the reference itself says."""
    reference = _obj(device_reference)
    device = _resolve(reference, index)
    identifiers = [_obj(i) for i in _items(device.get("identifier"))]
    eui64 = next((_text(i.get("value")) for i in identifiers
                  if _text(i.get("system")) == EUI64_SYSTEM and _text(i.get("value"))), "")
    return (eui64 or _identifier(device) or _text(device.get("id"))
            or _text(_obj(reference.get("identifier")).get("value"))
            or _conditional_identifier(reference, "Device")
            or _text(reference.get("display")) or _text(reference.get("reference")))


def _effective_ms(observation: dict[str, Any], where: str) -> int:
    for key in ("effectiveDateTime", "effectiveInstant"):
        if key in observation:
            return fhir_time_ms(observation[key])
    period = _obj(observation.get("effectivePeriod"))
    stamp = period.get("end") or period.get("start")
    if stamp:
        return fhir_time_ms(stamp)
    raise ObservationError("bad_timestamp", f"{where}: no effectiveDateTime, effectiveInstant or effectivePeriod")


def _quantity(holder: dict[str, Any], where: str, parameter: str = "") -> tuple[float, str]:
    """(value, declared unit) of a valueQuantity. The unit: a site table's vendor unit for a
    non-UCUM system and code, else the code, else the human-readable unit (a listed text
    becomes its UCUM code). A comparator (<, <=, >=, >) makes the value a bound, not a
    reading: refused (FHIR marks Quantity.comparator as a modifier)."""
    quantity = holder.get("valueQuantity")
    if not isinstance(quantity, dict):
        other = next((k for k in holder if k.startswith("value")), None)
        raise ObservationError("bad_value", f"{where}: {other or 'value[x]'} is not a valueQuantity")
    value = quantity.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ObservationError("bad_value", f"{where}: valueQuantity.value {value!r} is not a number")
    comparator = quantity.get("comparator")
    if comparator is not None:
        raise ObservationError("bad_value", f"{where}: valueQuantity {comparator}{value} has a "
                               "comparator: a bound, not an exact reading")
    code, system, text = _text(quantity.get("code")), _text(quantity.get("system")), _text(quantity.get("unit"))
    if code and system and system != UCUM_SYSTEM:
        site = codes_table.site_table().unit(system, code)
        if site:
            return float(value), site
    return float(value), declared_unit(parameter, (code, text)) if parameter else (code or text)


def _observation(observation: Any, number: int, index: dict[str, dict[str, Any]],
                 received_ms: int, result: IngestResult) -> None:
    where = f"Observation[{number}]"
    if not isinstance(observation, dict):
        raise ObservationError("invalid_fhir", f"{where} is not an object")
    _check_modifiers(observation, where)
    contained = [_obj(c) for c in _items(observation.get("contained"))]
    if contained:  # "#id" references name resources contained in this Observation only
        index = {**index, **{f"#{_text(c.get('id'))}": c for c in contained if _text(c.get("id"))}}
    status = observation.get("status")
    status = status if isinstance(status, str) else repr(status)
    if status in IGNORED_STATUSES:
        result.ignored += 1
        return
    if status not in USABLE_STATUSES:
        raise ObservationError("invalid_fhir", f"{where}: status {status!r} is not an Observation status")
    coded = _codes(observation.get("code"))
    loinc_codes = {code for system, code in coded if system == LOINC_SYSTEM}
    components = [_obj(c) for c in _items(observation.get("component"))]
    is_bp_panel = not loinc_codes.isdisjoint(LOINC_BP_PANELS)
    # The vital-signs panel with values in its components is read like the BP panel; without
    # components it only groups members that come as their own Observations.
    is_panel = is_bp_panel or (bool(components) and LOINC_VITAL_SIGNS_PANEL in loinc_codes)
    mapped = None if is_panel else _concept_parameter(None, coded)
    if not is_panel and mapped is None:
        result.ignored += 1  # unknown code, or the vital-signs panel whose members come apart
        return
    for position, component in enumerate(components):
        _check_modifiers(component, f"{where}.component[{position}]")
    patient_id = _patient_id(observation.get("subject"), index)
    if not patient_id:
        raise ObservationError("missing_patient", f"{where}: subject does not identify a patient")
    device_time_ms = _effective_ms(observation, where)
    ward, bed = _location(observation.get("encounter"), index)
    source = _device_id(observation.get("device"), index)

    def take(holder: dict[str, Any], parameter: str, source_code: str, part: str) -> None:
        absent = _codes(holder.get("dataAbsentReason"))
        if absent and not any(k.startswith("value") for k in holder):
            reason = absent[0][1] or "unknown"
            kind = "sensor_off" if reason == "error" else "no_value"
            result.technical.append(technical_event(
                kind, patient_id, ward, bed, parameter, device_time_ms, source,
                f"{source_code}: dataAbsentReason {reason}"))
            return
        number_value, unit = _quantity(holder, part, parameter)
        value, artefact = canonical_value(parameter, number_value, unit)
        result.samples.append(Sample(
            patient_id=patient_id, ward=ward, bed=bed, parameter=parameter, value=value,
            unit=CANONICAL_UNITS[parameter], device_time_ms=device_time_ms, source=source,
            ingest_time_ms=received_ms, source_code=source_code, artefact=artefact))

    if is_panel:
        wanted = ("systolic_bp", "diastolic_bp") if is_bp_panel else None
        found = 0
        for position, component in enumerate(components):
            part = _concept_parameter(component.get("code"))
            if part and (wanted is None or part[0] in wanted):
                found += 1
                take(component, part[0], part[1], f"{where}.component[{position}]")
            else:
                result.ignored += 1
        if not found and is_bp_panel:
            raise ObservationError("invalid_fhir", f"{where}: blood pressure panel without "
                                   "systolic or diastolic component")
        return
    assert mapped is not None
    take(observation, mapped[0], mapped[1], where)
    if mapped[0] == "spo2":
        _supplemental_oxygen(components, where, patient_id, ward, bed, device_time_ms, source,
                             received_ms, result)


def _supplemental_oxygen(components: list[dict[str, Any]], where: str, patient_id: str, ward: str,
                         bed: str, device_time_ms: int, source: str, received_ms: int,
                         result: IngestResult) -> None:
    """US Core pulse oximetry components: an inhaled O2 flow above 0 L/min, or an inhaled
    concentration above air's 21 %, means the patient is on oxygen (NEWS2 'air or oxygen')."""
    for position, component in enumerate(components):
        if _has_loinc(component.get("code"), LOINC_INHALED_O2_FLOW):
            code, threshold = LOINC_INHALED_O2_FLOW, 0.0
        elif _has_loinc(component.get("code"), LOINC_INHALED_O2_CONCENTRATION):
            code, threshold = LOINC_INHALED_O2_CONCENTRATION, AIR_O2_PCT
        else:
            continue
        if "dataAbsentReason" in component and "valueQuantity" not in component:
            continue
        amount, unit = _quantity(component, f"{where}.component[{position}]")
        expected = "L/min" if code == LOINC_INHALED_O2_FLOW else "%"
        if unit.casefold() != expected.casefold():
            raise ObservationError("bad_unit", f"{where}.component[{position}]: LOINC {code} in "
                                   f"{unit!r}; expected {expected!r}")
        if amount < 0:
            raise ObservationError("implausible_value", f"{where}.component[{position}]: negative oxygen")
        result.samples.append(Sample(
            patient_id=patient_id, ward=ward, bed=bed, parameter="on_oxygen",
            value=amount > threshold, unit=CANONICAL_UNITS["on_oxygen"],
            device_time_ms=device_time_ms, source=source, ingest_time_ms=received_ms,
            source_code=f"LOINC:{code}"))


# The fast path of the common FHIR message. ``fhir_rows`` reads Bundles (and single
# Observations) of plain vital-sign Observations, each one valueQuantity with an
# effectiveDateTime, with the full parser's own functions; what it saves is doing the same
# work twice: a Bundle's Observations name the same patient, encounter and device, so each
# reference is resolved once per message, and each code, unit and time once per process.
# Anything else it declines (None), and `parse_fhir` then reads it or refuses it with the reason.
_PLAIN_OBSERVATION_KEYS = frozenset({
    "resourceType", "id", "meta", "text", "identifier", "status", "category", "code", "subject",
    "encounter", "device", "effectiveDateTime", "issued", "performer", "valueQuantity",
    "interpretation", "note", "bodySite", "method", "referenceRange", "extension", "hasMember",
})
_CACHE_MAX = 4096  # distinct codes, units or times, then the cache starts afresh
_PANEL = ("panel", "")
_concepts: dict[bytes, tuple[str, str] | None] = {}
_conversions: dict[tuple[str, Any, Any, Any], Callable[[float], float] | None] = {}
_times: dict[str, int] = {}
_cached_site: list[Any] = [None]


def _concept(code: Any) -> tuple[str, str] | None:
    """(parameter, source code) of an Observation.code, ``_PANEL`` for a blood-pressure
    panel, None for a code the full parser ignores."""
    key = orjson.dumps(code)
    found = _concepts.get(key, _PANEL[1])
    if found == "":
        coded = _codes(code)
        if not {code for system, code in coded if system == LOINC_SYSTEM}.isdisjoint(LOINC_BP_PANELS):
            found = _PANEL
        else:
            found = _concept_parameter(None, coded)
        if len(_concepts) >= _CACHE_MAX:
            _concepts.clear()
        _concepts[key] = found
    return found  # type: ignore[return-value]


def _time_ms(stamp: Any) -> int | None:
    if not isinstance(stamp, str):
        return None
    millis = _times.get(stamp)
    if millis is None:
        try:
            millis = fhir_time_ms(stamp)
        except ObservationError:
            return None
        if len(_times) >= _CACHE_MAX:
            _times.clear()
        _times[stamp] = millis
    return millis


def _context(observation: dict[str, Any], index: dict[str, dict[str, Any]],
             memo: dict[tuple[str, str, str], tuple[str, str, str, str]]) -> tuple[str, str, str, str]:
    """(patient id, ward, bed, device) of an Observation, resolved once per message for the
    plain references ``{"reference": ...}`` a Bundle's Observations share."""
    subject, encounter, device = observation.get("subject"), observation.get("encounter"), observation.get("device")
    key = (_plain_reference(subject), _plain_reference(encounter), _plain_reference(device))
    found = memo.get(key) if "" not in key else None  # type: ignore[arg-type]
    if found is None:
        found = (_patient_id(subject, index), *_location(encounter, index), _device_id(device, index))
        if "" not in key:
            memo[key] = found  # type: ignore[index]
    return found


def _plain_reference(reference: Any) -> str:
    if type(reference) is dict and len(reference) == 1:
        target = reference.get("reference")
        if type(target) is str and target:
            return target
    return ""


_QUANTITY_KEYS = frozenset({"value", "unit", "system", "code"})


def _reading(observation: dict[str, Any], parameter: str, where: str) -> float | None:
    """The canonical value of a plain valueQuantity (value, unit, system, code), its unit
    read by `_quantity` and converted by `unit_conversion` once per unit; None otherwise."""
    quantity = observation.get("valueQuantity")
    if type(quantity) is not dict or not _QUANTITY_KEYS.issuperset(quantity):
        return None
    value = quantity.get("value")
    if type(value) is not float and type(value) is not int:
        return None
    code, system, text = quantity.get("code"), quantity.get("system"), quantity.get("unit")
    if not all(part is None or type(part) is str for part in (code, system, text)):
        return None
    key = (parameter, code, system, text)
    if key not in _conversions:
        try:
            convert: Callable[[float], float] | None = unit_conversion(
                parameter, _quantity({"valueQuantity": {"value": 0, "code": code, "system": system, "unit": text}},
                                     where, parameter)[1])
        except ObservationError:
            convert = None
        if len(_conversions) >= _CACHE_MAX:
            _conversions.clear()
        _conversions[key] = convert
    convert = _conversions[key]
    return None if convert is None else convert(float(value))


def fhir_rows(raw: bytes, received_ms: int, max_ahead_ms: int = MAX_AHEAD_MS) -> list[tuple[Any, ...]] | None:
    """The samples of a common FHIR message as rows (``sample_row`` order), exactly as
    `vitalstream.ingest.parse_raw` gives them, or None for any message it does not take. It
    takes only messages whose every Observation gives one numeric reading or is skipped
    (entered in error, a code not mapped), so it never makes a technical event or a
    rejection, and it applies the checks of `vitalstream.ingest.vet` itself."""
    if raw[:1] != b"{" or len(raw) > MAX_MESSAGE_BYTES:
        return None
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(document, dict):
        return None
    scratch = IngestResult(format="fhir")
    observations, index = _observations(document, scratch)
    if scratch.rejection is not None:
        return None
    site = codes_table.site_table()
    if _cached_site[0] is not site:
        _concepts.clear()
        _conversions.clear()
        _cached_site[0] = site
    latest_ms = received_ms + max_ahead_ms if received_ms > 0 else None
    memo: dict[tuple[str, str, str], tuple[str, str, str, str]] = {}
    rows: list[tuple[Any, ...]] = []
    try:
        for number, observation in enumerate(observations):
            if not isinstance(observation, dict) or not _PLAIN_OBSERVATION_KEYS.issuperset(observation):
                return None
            status = observation.get("status")
            if not isinstance(status, str):
                return None
            if status in IGNORED_STATUSES:
                continue
            if status not in USABLE_STATUSES:
                return None
            mapped = _concept(observation.get("code"))
            if mapped is None:
                continue
            parameter, source_code = mapped
            if mapped is _PANEL or parameter not in PLAUSIBILITY:
                return None
            patient_id, ward, bed, source = _context(observation, index, memo)
            device_time_ms = _time_ms(observation.get("effectiveDateTime"))
            if not patient_id or device_time_ms is None or (latest_ms is not None and device_time_ms > latest_ms):
                return None
            value = _reading(observation, parameter, f"Observation[{number}]")
            if value is None:
                return None
            possible_low, possible_high, plausible_low, plausible_high = PLAUSIBILITY[parameter]
            if not possible_low <= value <= possible_high:
                return None
            rows.append((patient_id, ward, bed, parameter, value, CANONICAL_UNITS[parameter], device_time_ms,
                         source, received_ms, source_code, not plausible_low <= value <= plausible_high))
    except ObservationError:
        return None
    return rows or None
