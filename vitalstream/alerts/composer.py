"""Short, exact alert summaries from templates; no language model.

The composer reads only the alert's payload, and only the display strings the policy
put there (``shown`` values, ``HH:MM`` times), so every number a nurse reads is in the
structured payload too, and the same payload always gives the same words. A summary is
at most ``max_chars`` (300) characters: when the full text is longer, trend clauses are
shortened first, then the least weighty readings dropped; the header, the partial-score
note and the time of the last data are always kept.

Times are printed as HH:MM in the payload's ``time_zone`` (UTC unless configured).

>>> compose_summary({"kind": "technical", "status": "raised", "technical": "no_data",
...     "patient": {"patient_id": "p1", "ward": "4B", "bed": "12"},
...     "parameter": "spo2", "since": {"shown": "13:40"}, "duration_min": 20})
'Bed 12, Ward 4B: technical, no SpO2 data since 13:40 (20 min).'
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any

MAX_SUMMARY_CHARS = 300

# How a nurse reads each parameter on the chart.
LABELS: dict[str, str] = {
    "resp_rate": "RR",
    "spo2": "SpO2",
    "on_oxygen": "O2",
    "systolic_bp": "SBP",
    "diastolic_bp": "DBP",
    "heart_rate": "HR",
    "consciousness": "ACVPU",
    "temperature": "Temp",
}
UNITS: dict[str, str] = {
    "resp_rate": "/min",
    "spo2": " %",
    "systolic_bp": " mmHg",
    "diastolic_bp": " mmHg",
    "heart_rate": "/min",
    "temperature": " °C",
}
# Decimal places shown: the chart's own resolution, so the printed value is the one scored.
PLACES: dict[str, int] = {"temperature": 1}


@functools.lru_cache(maxsize=16)
def _zone(name: str) -> dt.tzinfo:
    if name.upper() == "UTC":
        return dt.UTC
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def clock_time(time_ms: int, zone: str = "UTC") -> str:
    """``HH:MM`` of an epoch-ms time in ``zone``.

    >>> clock_time(1773569700000)
    '10:15'
    """
    return dt.datetime.fromtimestamp(time_ms / 1000.0, _zone(zone)).strftime("%H:%M")


_WIDE = Context(prec=400)


def show_number(value: float, places: int = 0) -> str:
    """A measured number as printed: rounded half away from zero like the NEWS2 chart
    rule (so the printed value is the one scored), no ``-0``.

    >>> show_number(20.5), show_number(38.05, 1), show_number(-0.04, 1)
    ('21', '38.1', '0.0')
    """
    # Decimal from repr() avoids binary artefacts: 38.05 * 10 is 380.4999... in floats.
    quantum = Decimal(1).scaleb(-places)
    # Precision for any float (up to 1e308 and its places): an absurd reading that reached
    # an alert is printed as measured, never a crash of the patient's whole batch.
    rounded = Decimal(repr(float(value))).quantize(quantum, rounding=ROUND_HALF_UP, context=_WIDE)
    if rounded == 0:
        rounded = Decimal(0).quantize(quantum)
    return str(rounded)


def show_value(parameter: str, value: Any) -> str:
    if parameter == "consciousness":
        return str(value)
    if parameter == "on_oxygen":
        return "O2" if value else "air"
    return show_number(float(value), PLACES.get(parameter, 0))


def _place(patient: Mapping[str, Any]) -> str:
    bed, ward = patient.get("bed") or "", patient.get("ward") or ""
    if bed and ward:
        return f"Bed {bed}, Ward {ward}"
    if bed or ward:
        return f"Bed {bed}" if bed else f"Ward {ward}"
    return f"Patient {patient.get('patient_id', '')}"


def _reading(parameter: str, observation: Mapping[str, Any], payload: Mapping[str, Any]) -> str:
    label = LABELS.get(parameter, parameter)
    if parameter == "consciousness":
        text = f"ACVPU {observation['shown']}"
    elif parameter == "on_oxygen":
        text = "on O2" if observation["value"] else "on air"
    else:
        text = f"{label} {observation['shown']}{UNITS.get(parameter, '')}"
    if parameter == "spo2":
        if payload["news2"].get("spo2_scale") == 2:
            text += " (scale 2)"
        oxygen = payload["observations"].get("on_oxygen")
        if oxygen is not None:
            text += " on O2" if oxygen["value"] else " on air"
    if observation.get("time_shown") and observation.get("time_shown") != payload["time"]["shown"]:
        text += f" at {observation['time_shown']}"
    return text


def _trend(trend: Mapping[str, Any]) -> str:
    direction = "up" if trend["change"] > 0 else "down"
    return f", {direction} {trend['change_shown']} in {trend['window_shown']}"


def _partial_note(payload: Mapping[str, Any]) -> str:
    parts = [f"no {LABELS.get(s['parameter'], s['parameter'])} since {s['last']}"
             for s in payload.get("stale", ())]
    missing = [LABELS.get(p, p) for p in payload.get("missing", ())]
    if missing:
        parts.append(f"{', '.join(missing)} not measured")
    return f"Partial score: {'; '.join(parts)}." if parts else ""


class _Segments:
    """Sentences with a weight (0 is always kept) and an optional shorter form."""

    def __init__(self) -> None:
        self.items: list[list[Any]] = []

    def add(self, text: str, weight: int = 0, short: str | None = None) -> None:
        if text:
            self.items.append([text, weight, short])

    def render(self, max_chars: int) -> str:
        def text() -> str:
            return " ".join(item[0] for item in self.items)

        for weight in sorted({item[1] for item in self.items}, reverse=True):
            for item in self.items:
                if len(text()) <= max_chars:
                    return text()
                if item[1] == weight and item[2] is not None:
                    item[0], item[2] = item[2], None
        for weight in sorted({item[1] for item in self.items if item[1] > 0}, reverse=True):
            for item in list(self.items):
                if len(text()) <= max_chars:
                    return text()
                if item[1] == weight:
                    self.items.remove(item)
        result = text()
        return result if len(result) <= max_chars else result[: max_chars - 1] + "…"


def _clinical(payload: Mapping[str, Any], segments: _Segments) -> None:
    news2 = payload["news2"]
    status = payload["status"]
    band = news2["band"] + (", partial" if news2.get("partial") else "")
    score = f"NEWS2 {news2['total']} ({band})"
    previous = news2.get("previous")
    lead = {"escalated": "worse, ", "reraised": "still "}.get(status, "")
    header = f"{_place(payload['patient'])}: {lead}{score}"
    if status == "reraised" and payload.get("ack"):
        header += f", acknowledged at {payload['ack']['shown']}"
    elif previous:
        header += f", up from {previous['total']} at {previous['shown']}"
    segments.add(header + ".")
    segments.add(_partial_note(payload))
    observations = payload["observations"]
    components = news2.get("components", {})
    scored = sorted((p for p, score in components.items() if score and p in observations),
                    key=lambda p: (-components[p], list(components).index(p)))
    if "spo2" in scored and "on_oxygen" in scored:
        scored.remove("on_oxygen")  # printed with the SpO2 reading
    for parameter in scored:
        reading = _reading(parameter, observations[parameter], payload)
        trend = payload.get("trends", {}).get(parameter)
        weight = 4 - components[parameter]
        reading = reading[0].upper() + reading[1:]
        if trend:
            segments.add(reading + _trend(trend) + ".", weight, reading + ".")
        else:
            segments.add(reading + ".", weight)
    risk = payload.get("risk")
    # The risk is printed only where it carries information: the model named factors (it
    # does so only above its alert-budget threshold, see models/MODEL_CARD.md) or the risk
    # itself raised the alert. A bare "Risk 0.01" tells the nurse nothing.
    risk_raised = any(r.get("rule") == "risk" for r in payload.get("reasons", ()) or ())
    if risk and (risk.get("factors") or risk_raised):
        text = f"Risk {risk['shown']}"
        if risk.get("trend") in ("rising", "falling"):
            text += f", {risk['trend']}"
        factors = [name for name, _ in risk.get("factors", ())[:2]]
        full = text + (f"; main factors: {', '.join(factors)}." if factors else ".")
        segments.add(full, 2, text + ".")
    segments.add(f"Last data {payload['last_data']['shown']}.")


def _acknowledged(payload: Mapping[str, Any], segments: _Segments) -> None:
    ack = payload["ack"]
    what = (f"NEWS2 {payload['news2']['total']}" if payload["kind"] == "clinical"
            else f"{_technical_name(payload)}")
    segments.add(f"{_place(payload['patient'])}: {payload['priority']} alert ({what}) "
                 f"acknowledged by {ack['by']} at {ack['shown']}; silent until "
                 f"{ack['expires']} unless worse.")


def _label(payload: Mapping[str, Any]) -> str:
    """``HR, RR, SpO2`` for a technical alert's parameter(s)."""
    names = str(payload.get("parameter", "")).split(",")
    return ", ".join(LABELS.get(name, name) for name in names)


def _technical_name(payload: Mapping[str, Any]) -> str:
    label = _label(payload)
    technical = payload.get("technical")
    if technical == "no_data":
        return f"no {label} data"
    if technical == "sensor_off":
        return f"{label} sensor off"
    if technical == "artefact":
        return f"{label} artefact"
    if technical == "no_value":
        return f"{label} without value"
    return f"{technical} {label}".strip()


def _resolved(payload: Mapping[str, Any], segments: _Segments) -> None:
    place = _place(payload["patient"])
    resolution = payload["resolution"]
    if payload["kind"] == "clinical":
        news2 = payload["news2"]
        segments.add(f"{place}: NEWS2 {news2['total']} ({news2['band']}) since "
                     f"{resolution['clear_since']}; alert raised {payload['episode_start']['shown']} "
                     f"resolved at {payload['time']['shown']}.")
    else:
        segments.add(f"{place}: {_label(payload)} data again at {payload['time']['shown']}; technical "
                     f"alert from {payload['episode_start']['shown']} resolved.")


def _technical(payload: Mapping[str, Any], segments: _Segments) -> None:
    place = _place(payload["patient"])
    label = _label(payload)
    technical = payload.get("technical")
    still = "still " if payload.get("status") == "reraised" else ""
    if technical == "no_data":
        text = (f"{place}: technical, {still}no {label} data since {payload['since']['shown']} "
                f"({payload['duration_min']} min).")
    elif technical == "sensor_off":
        source = f" (source {payload['source']})" if payload.get("source") else ""
        text = f"{place}: technical, {still}{label} sensor off at {payload['since']['shown']}{source}."
    elif technical in ("artefact", "no_value"):
        what = "artefact readings" if technical == "artefact" else "readings without a value"
        text = (f"{place}: technical, {still}{payload['count']} {label} {what} "
                f"{payload['since']['shown']}-{payload['time']['shown']}.")
    else:
        detail = f": {payload['detail']}" if payload.get("detail") else ""
        text = f"{place}: technical, {still}{technical} {label} at {payload['since']['shown']}{detail}."
    segments.add(text)
    last_score = payload.get("last_news2")
    if last_score and technical in ("no_data", "sensor_off"):
        segments.add(f"Last NEWS2 {last_score['total']} at {last_score['shown']} is not current.", 1)


def compose_summary(payload: Mapping[str, Any], max_chars: int = MAX_SUMMARY_CHARS) -> str:
    """The one-paragraph summary of an alert payload (deterministic, <= ``max_chars``)."""
    segments = _Segments()
    status = payload.get("status")
    if status == "acknowledged":
        _acknowledged(payload, segments)
    elif status == "resolved":
        _resolved(payload, segments)
    elif payload.get("kind") == "technical":
        _technical(payload, segments)
    else:
        _clinical(payload, segments)
    return segments.render(max_chars)
