"""Device and terminology codes <-> canonical parameters, in one place for both directions.

Ingest reads them (HL7 v2 IHE PCD-01 carries IEEE 11073 MDC codes, FHIR R4 carries LOINC);
simulators that *write* HL7 or FHIR import the preferred codes from here, so a round trip
through the parsers meets the very same table.

>>> parameter_for_mdc("149530")
'heart_rate'
>>> parameter_for_mdc("MDC_TEMP_ORAL")
'temperature'
>>> parameter_for_loinc("8480-6")
'systolic_bp'
>>> PREFERRED_MDC["spo2"]
MdcCode(code='150456', name='MDC_PULS_OXIM_SAT_O2', parameter='spo2')
>>> PREFERRED_MDC_UNIT["systolic_bp"]
('266016', 'MDC_DIM_MMHG')
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import NamedTuple

MDC_SYSTEM = "urn:iso:std:iso:11073:10101"
LOINC_SYSTEM = "http://loinc.org"
UCUM_SYSTEM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
# HL7 v2 OBX-3/OBX-6 coding-system names for the same code systems.
HL7_MDC_SYSTEM = "MDC"
HL7_UCUM_SYSTEM = "UCUM"
HL7_LOINC_SYSTEM = "LN"
# IEEE EUI-64 as a FHIR Device.identifier system (the PCD profiles' OID for it).
EUI64_SYSTEM = "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680"


class MdcCode(NamedTuple):
    """An IEEE 11073-10101 term: numeric code (partition * 65536 + term), reference id."""

    code: str
    name: str
    parameter: str


class LoincCode(NamedTuple):
    code: str
    display: str
    parameter: str


# Observation identifiers (OBX-3). Only terms that measure the canonical concept itself:
# peripheral (finger, toe, skin) temperatures are not body temperature for NEWS2, and mean
# pressures have no canonical parameter, so they are ignored (counted), not mapped.
MDC_OBSERVATIONS: tuple[MdcCode, ...] = (
    MdcCode("147842", "MDC_ECG_HEART_RATE", "heart_rate"),
    MdcCode("149530", "MDC_PULS_OXIM_PULS_RATE", "heart_rate"),
    MdcCode("150456", "MDC_PULS_OXIM_SAT_O2", "spo2"),
    MdcCode("151562", "MDC_RESP_RATE", "resp_rate"),
    MdcCode("151578", "MDC_TTHOR_RESP_RATE", "resp_rate"),
    MdcCode("151594", "MDC_CO2_RESP_RATE", "resp_rate"),
    MdcCode("150021", "MDC_PRESS_BLD_NONINV_SYS", "systolic_bp"),
    MdcCode("150022", "MDC_PRESS_BLD_NONINV_DIA", "diastolic_bp"),
    MdcCode("150017", "MDC_PRESS_BLD_ART_SYS", "systolic_bp"),
    MdcCode("150018", "MDC_PRESS_BLD_ART_DIA", "diastolic_bp"),
    MdcCode("150033", "MDC_PRESS_BLD_ART_ABP_SYS", "systolic_bp"),
    MdcCode("150034", "MDC_PRESS_BLD_ART_ABP_DIA", "diastolic_bp"),
    MdcCode("150344", "MDC_TEMP", "temperature"),
    MdcCode("150364", "MDC_TEMP_BODY", "temperature"),
    MdcCode("150392", "MDC_TEMP_TYMP", "temperature"),
    MdcCode("188420", "MDC_TEMP_RECT", "temperature"),
    MdcCode("188424", "MDC_TEMP_ORAL", "temperature"),
    MdcCode("188428", "MDC_TEMP_EAR", "temperature"),
    MdcCode("188452", "MDC_TEMP_AXILLA", "temperature"),
    MdcCode("188456", "MDC_TEMP_GIT", "temperature"),
)
# IEEE 11073 compound pressures: one metric whose value is systolic ^ diastolic ^ mean (an
# HL7 NA value, PCD-01). Each position maps to a parameter; None is not read (mean pressure).
MDC_COMPOUNDS: dict[str, tuple[str, tuple[str | None, ...]]] = {
    "150020": ("MDC_PRESS_BLD_NONINV", ("systolic_bp", "diastolic_bp", None)),
    "150016": ("MDC_PRESS_BLD_ART", ("systolic_bp", "diastolic_bp", None)),
    "150032": ("MDC_PRESS_BLD_ART_ABP", ("systolic_bp", "diastolic_bp", None)),
}
_COMPOUND_BY_NAME = {name: code for code, (name, _) in MDC_COMPOUNDS.items()}

# Device events that mean "this measurement has no patient behind it right now".
# (code, name, parameter it silences, technical event kind)
MDC_TECHNICAL_EVENTS: dict[str, tuple[str, str, str]] = {
    "196876": ("MDC_EVT_LEAD_DISCONN", "heart_rate", "lead_off"),
}

# Units (OBX-6), partition 4 (dimensions): code -> (reference id, UCUM equivalent).
MDC_UNITS: dict[str, tuple[str, str]] = {
    "262688": ("MDC_DIM_PERCENT", "%"),
    "264864": ("MDC_DIM_BEAT_PER_MIN", "{beats}/min"),
    "264928": ("MDC_DIM_RESP_PER_MIN", "{breaths}/min"),
    "266016": ("MDC_DIM_MMHG", "mm[Hg]"),
    "265987": ("MDC_DIM_KILO_PASCAL", "kPa"),
    "265986": ("MDC_DIM_HECTO_PASCAL", "hPa"),
    "268192": ("MDC_DIM_DEGC", "Cel"),
    "266560": ("MDC_DIM_FAHR", "[degF]"),
    "266528": ("MDC_DIM_KELVIN", "K"),
}

LOINC_OBSERVATIONS: tuple[LoincCode, ...] = (
    LoincCode("8867-4", "Heart rate", "heart_rate"),
    LoincCode("2708-6", "Oxygen saturation in Arterial blood", "spo2"),
    LoincCode("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "spo2"),
    LoincCode("9279-1", "Respiratory rate", "resp_rate"),
    LoincCode("8310-5", "Body temperature", "temperature"),
    LoincCode("8331-1", "Oral temperature", "temperature"),
    LoincCode("8328-7", "Axillary temperature", "temperature"),
    LoincCode("8332-9", "Rectal temperature", "temperature"),
    LoincCode("8333-7", "Tympanic membrane temperature", "temperature"),
    LoincCode("8329-5", "Body temperature - Core", "temperature"),
    LoincCode("8480-6", "Systolic blood pressure", "systolic_bp"),
    LoincCode("8462-4", "Diastolic blood pressure", "diastolic_bp"),
)
LOINC_BP_PANEL = "85354-9"  # Blood pressure panel: systolic and diastolic as components
# 55284-4 "Blood pressure systolic and diastolic" is used the same way (components).
LOINC_BP_PANELS = frozenset({LOINC_BP_PANEL, "55284-4"})
# Vital-signs panel: usually only groups its members (hasMember), but some senders put the
# values in its components, which are then read like separate Observations.
LOINC_VITAL_SIGNS_PANEL = "85353-1"
# US Core pulse oximetry components: supplemental oxygen shows as a flow or concentration.
LOINC_INHALED_O2_FLOW = "3151-8"  # L/min
LOINC_INHALED_O2_CONCENTRATION = "3150-0"  # %

# Lookups, built once from the tables above.
_MDC_BY_CODE: dict[str, MdcCode] = {term.code: term for term in MDC_OBSERVATIONS}
_MDC_BY_NAME: dict[str, MdcCode] = {term.name: term for term in MDC_OBSERVATIONS}
_LOINC_BY_CODE: dict[str, LoincCode] = {term.code: term for term in LOINC_OBSERVATIONS}

# What a writer (simulator, exporter) should emit for each parameter.
PREFERRED_MDC: dict[str, MdcCode] = {
    "heart_rate": _MDC_BY_NAME["MDC_ECG_HEART_RATE"],
    "spo2": _MDC_BY_NAME["MDC_PULS_OXIM_SAT_O2"],
    "resp_rate": _MDC_BY_NAME["MDC_RESP_RATE"],
    "systolic_bp": _MDC_BY_NAME["MDC_PRESS_BLD_NONINV_SYS"],
    "diastolic_bp": _MDC_BY_NAME["MDC_PRESS_BLD_NONINV_DIA"],
    "temperature": _MDC_BY_NAME["MDC_TEMP"],
}
PREFERRED_MDC_UNIT: dict[str, tuple[str, str]] = {
    "heart_rate": ("264864", "MDC_DIM_BEAT_PER_MIN"),
    "spo2": ("262688", "MDC_DIM_PERCENT"),
    "resp_rate": ("264928", "MDC_DIM_RESP_PER_MIN"),
    "systolic_bp": ("266016", "MDC_DIM_MMHG"),
    "diastolic_bp": ("266016", "MDC_DIM_MMHG"),
    "temperature": ("268192", "MDC_DIM_DEGC"),
}
PREFERRED_LOINC: dict[str, LoincCode] = {
    "heart_rate": _LOINC_BY_CODE["8867-4"],
    "spo2": _LOINC_BY_CODE["59408-5"],
    "resp_rate": _LOINC_BY_CODE["9279-1"],
    "systolic_bp": _LOINC_BY_CODE["8480-6"],
    "diastolic_bp": _LOINC_BY_CODE["8462-4"],
    "temperature": _LOINC_BY_CODE["8310-5"],
}
PREFERRED_UCUM: dict[str, str] = {
    "heart_rate": "/min",
    "spo2": "%",
    "resp_rate": "/min",
    "systolic_bp": "mm[Hg]",
    "diastolic_bp": "mm[Hg]",
    "temperature": "Cel",
}


def mdc_term(code_or_name: str) -> MdcCode | None:
    """The mapped MDC term for a numeric code or a reference id, or None when unmapped."""
    key = code_or_name.strip()
    return _MDC_BY_CODE.get(key) or _MDC_BY_NAME.get(key)


def parameter_for_mdc(code_or_name: str) -> str | None:
    term = mdc_term(code_or_name)
    return term.parameter if term else None


def parameter_for_loinc(code: str) -> str | None:
    term = _LOINC_BY_CODE.get(code.strip())
    return term.parameter if term else None


# Every MDC code and reference id some table here knows (observations, compounds, events):
# one set lookup tells a parser that an OBX-3 names none of them (MDS, VMD, channel rows).
MDC_KNOWN: frozenset[str] = frozenset(
    {term.code for term in MDC_OBSERVATIONS} | {term.name for term in MDC_OBSERVATIONS}
    | set(MDC_COMPOUNDS) | set(_COMPOUND_BY_NAME) | set(MDC_TECHNICAL_EVENTS))


def compound_for_mdc(code_or_name: str) -> tuple[str, str, tuple[str | None, ...]] | None:
    """(code, name, parameter per position) of an MDC compound metric, or None.

    >>> compound_for_mdc("150020")[2]
    ('systolic_bp', 'diastolic_bp', None)
    """
    key = code_or_name.strip()
    code = key if key in MDC_COMPOUNDS else _COMPOUND_BY_NAME.get(key)
    if code is None:
        return None
    name, parameters = MDC_COMPOUNDS[code]
    return code, name, parameters


def ucum_for_mdc_unit(code_or_name: str) -> str | None:
    """The UCUM equivalent of an MDC dimension code or reference id, or None when unknown."""
    key = code_or_name.strip()
    if key in MDC_UNITS:
        return MDC_UNITS[key][1]
    for name, ucum in MDC_UNITS.values():
        if name == key:
            return ucum
    return None


# Units a sender wrote as words instead of a code: only spellings that can mean one thing
# for the parameter they are declared with (docs/ingest.md lists them). Keys are folded to
# lower case with single spaces. A bare "C" or "F", or "per min" for a temperature, is not
# here: guessing is what unit normalisation refuses.
UNIT_TEXTS: dict[str, dict[str, str]] = {
    "heart_rate": {"beats/minute": "/min", "beats per minute": "/min", "beat/min": "/min",
                   "beats/min.": "/min", "bpm.": "/min", "/minute": "/min", "per minute": "/min",
                   "1/minute": "/min", "pulse/min": "/min"},
    "resp_rate": {"breaths/minute": "/min", "breaths per minute": "/min", "breath/min": "/min",
                  "resp/min": "/min", "respirations/minute": "/min", "respirations per minute": "/min",
                  "/minute": "/min", "per minute": "/min", "1/minute": "/min", "rpm": "/min"},
    "spo2": {"percent": "%", "per cent": "%", "pct": "%"},
    "systolic_bp": {"mm hg": "mm[Hg]", "millimeters of mercury": "mm[Hg]",
                    "millimetres of mercury": "mm[Hg]", "mm of mercury": "mm[Hg]",
                    "kilopascal": "kPa", "kilopascals": "kPa"},
    "temperature": {"degrees celsius": "Cel", "degree celsius": "Cel", "celsius": "Cel",
                    "deg c": "Cel", "degrees c": "Cel", "centigrade": "Cel",
                    "degrees fahrenheit": "[degF]", "degree fahrenheit": "[degF]",
                    "fahrenheit": "[degF]", "deg f": "[degF]", "degrees f": "[degF]",
                    "kelvin": "K"},
}
UNIT_TEXTS["diastolic_bp"] = UNIT_TEXTS["systolic_bp"]


def ucum_for_unit_text(parameter: str, text: str) -> str | None:
    """The UCUM code of a unit written as words for ``parameter``, or None.

    >>> ucum_for_unit_text("heart_rate", "Beats/Minute")
    '/min'
    >>> ucum_for_unit_text("temperature", "C") is None
    True
    """
    folded = " ".join(text.casefold().split())
    return UNIT_TEXTS.get(parameter, {}).get(folded)


def declared_unit(parameter: str, candidates: tuple[str, ...]) -> str:
    """The first of ``candidates`` (a unit's code, then its text, as sent) that unit
    normalisation reads for ``parameter``, a listed unit text given as its UCUM code; else
    the first non-empty one as sent, which normalisation then refuses with its reason."""
    from vitalstream.ingest.normalise import UNIT_CONVERSIONS  # normalise imports this module

    known = UNIT_CONVERSIONS.get(parameter, {})
    for candidate in candidates:
        if not candidate:
            continue
        if candidate.casefold() in known or ucum_for_mdc_unit(candidate):
            return candidate
        words = ucum_for_unit_text(parameter, candidate)
        if words:
            return words
    return next((candidate for candidate in candidates if candidate), "")


# Site code table: vendor-private codes (e.g. Philips MDIL in OBX-3 and OBX-6) mapped to
# canonical parameters and UCUM units, per site, from a file (VITALSTREAM_SITE_CODE_TABLE),
# so that a new gateway needs a table row and not a code change. Format: docs/ingest.md.
SITE_TABLE_COLUMNS = ("kind", "system", "code", "maps_to")
_CANONICAL = frozenset({term.parameter for term in MDC_OBSERVATIONS})
_KNOWN_UCUM = frozenset({"/min", "1/min", "{beats}/min", "{breaths}/min", "%", "1", "mm[Hg]",
                         "kPa", "hPa", "Cel", "[degF]", "K"})


class SiteCodeError(ValueError):
    """The site code table cannot be used; the message is one readable line."""


class SiteCodes(NamedTuple):
    """(system, code) -> parameter for observations and -> UCUM for units, both folded to
    lower case: coding-system names and hexadecimal vendor codes are written either way."""

    observations: dict[tuple[str, str], str]
    units: dict[tuple[str, str], str]
    source: str = ""

    def parameter(self, system: str, code: str) -> str | None:
        return self.observations.get((system.strip().casefold(), code.strip().casefold()))

    def unit(self, system: str, code: str) -> str | None:
        return self.units.get((system.strip().casefold(), code.strip().casefold()))


def parse_site_codes(text: str, source: str = "<table>") -> SiteCodes:
    """Read a site code table (CSV: kind,system,code,maps_to; '#' starts a comment line).

    >>> table = parse_site_codes("kind,system,code,maps_to\\nobservation,MDIL,0002-4182,heart_rate\\n"
    ...                          "unit,MDIL,0004-0AA0,/min\\n")
    >>> table.parameter("mdil", "0002-4182"), table.unit("MDIL", "0004-0aa0")
    ('heart_rate', '/min')
    """
    observations: dict[tuple[str, str], str] = {}
    units: dict[tuple[str, str], str] = {}
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1)
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise SiteCodeError(f"site code table {source}: empty (expected a header "
                            f"{','.join(SITE_TABLE_COLUMNS)} and rows)")
    header_number, header = lines[0]
    if [cell.strip().lower() for cell in next(csv.reader([header]))] != list(SITE_TABLE_COLUMNS):
        raise SiteCodeError(f"site code table {source}:{header_number}: header must be "
                            f"{','.join(SITE_TABLE_COLUMNS)}")
    for number, line in lines[1:]:
        cells = [cell.strip() for cell in next(csv.reader(io.StringIO(line)))]
        where = f"site code table {source}:{number}"
        if len(cells) != 4 or not all(cells):
            raise SiteCodeError(f"{where}: expected 4 non-empty cells (kind,system,code,maps_to)")
        kind, system, code, target = cells
        key = (system.casefold(), code.casefold())
        if kind == "observation":
            if target not in _CANONICAL:
                raise SiteCodeError(f"{where}: {target!r} is not a parameter "
                                    f"({', '.join(sorted(_CANONICAL))})")
            table = observations
        elif kind == "unit":
            if target not in _KNOWN_UCUM:
                raise SiteCodeError(f"{where}: {target!r} is not a UCUM unit vitalstream reads "
                                    f"({', '.join(sorted(_KNOWN_UCUM))})")
            table = units
        else:
            raise SiteCodeError(f"{where}: kind {kind!r} is not observation or unit")
        if table.get(key, target) != target:
            raise SiteCodeError(f"{where}: {system} {code} is mapped twice, to {table[key]} and {target}")
        table[key] = target
    return SiteCodes(observations, units, source)


def load_site_codes(path: str) -> SiteCodes:
    """The site code table in file ``path``; SiteCodeError (one line) when it cannot be used."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SiteCodeError(f"site code table {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SiteCodeError(f"site code table {path}: cannot read: {exc}") from None
    return parse_site_codes(text, path)


EMPTY_SITE_CODES = SiteCodes({}, {})
SITE_CODE_TABLE_ENV = "VITALSTREAM_SITE_CODE_TABLE"
# The table a command installed at its start (`configure_site_codes`); None: follow the
# environment variable (a library caller of `parse_raw` that never ran a command).
_installed: SiteCodes | None = None
_from_environment: tuple[str, SiteCodes] = ("", EMPTY_SITE_CODES)


def install_site_codes(table: SiteCodes | None) -> None:
    """Use ``table`` in this process (None: the table VITALSTREAM_SITE_CODE_TABLE names)."""
    global _installed
    _installed = table


def configure_site_codes(path: str) -> SiteCodes:
    """Load and install the table at ``path`` (the setting site_code_table); '' installs none.
    Called by every command that parses messages, at its start, so a bad table stops it
    with one line instead of refusing messages later."""
    table = load_site_codes(path) if path else EMPTY_SITE_CODES
    install_site_codes(table if path else None)
    return table


def site_table() -> SiteCodes:
    """The site code table the parsers use: the installed one, else the one the environment
    names (read once per path; a file that cannot be used counts as no table, and the
    commands, which check it at start, say why)."""
    global _from_environment
    if _installed is not None:
        return _installed
    path = os.environ.get(SITE_CODE_TABLE_ENV, "")
    if path != _from_environment[0]:
        try:
            table = load_site_codes(path) if path else EMPTY_SITE_CODES
        except SiteCodeError:
            table = EMPTY_SITE_CODES
        _from_environment = (path, table)
    return _from_environment[1]
