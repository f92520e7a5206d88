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

from typing import NamedTuple

MDC_SYSTEM = "urn:iso:std:iso:11073:10101"
LOINC_SYSTEM = "http://loinc.org"
UCUM_SYSTEM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
# HL7 v2 OBX-3/OBX-6 coding-system names for the same code systems.
HL7_MDC_SYSTEM = "MDC"
HL7_UCUM_SYSTEM = "UCUM"


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
LOINC_VITAL_SIGNS_PANEL = "85353-1"  # grouping only (hasMember); carries no value itself
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


def ucum_for_mdc_unit(code_or_name: str) -> str | None:
    """The UCUM equivalent of an MDC dimension code or reference id, or None when unknown."""
    key = code_or_name.strip()
    if key in MDC_UNITS:
        return MDC_UNITS[key][1]
    for name, ucum in MDC_UNITS.values():
        if name == key:
            return ucum
    return None
