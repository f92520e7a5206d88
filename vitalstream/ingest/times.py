"""Gateway timestamps -> UTC milliseconds since the epoch, time zones honoured.

A timestamp without an offset is taken as UTC (documented in docs/ingest.md): gateways
are expected to send offsets, and a fixed rule beats the host's local zone, which would
make the same message mean different times on different servers.

>>> hl7_time_ms("20260315111500+0100")
1773569700000
>>> hl7_time_ms("20260315101500.25")
1773569700250
>>> fhir_time_ms("2026-03-15T06:15:00-04:00")
1773569700000

A device time further ahead of the receive time than the tolerance is refused
(``future_time``): one such reading would otherwise move its patient's clock, and every
later real reading of that patient would look late.

>>> check_not_ahead(1773569700000 + 301_000, received_ms=1773569700000, max_ahead_ms=300_000)
Traceback (most recent call last):
...
vitalstream.ingest.normalise.ObservationError: future_time: device time 2026-03-15T10:20:01Z is 301 s ahead of the receive time (tolerance 300 s)
"""

from __future__ import annotations

import datetime as dt
import re

from vitalstream.ingest.normalise import ObservationError

# How far a device time may be ahead of the receive time (device clocks drift; gateways
# batch): the default of the VITALSTREAM_DEVICE_TIME_MAX_AHEAD_S setting.
MAX_AHEAD_MS = 300_000

# HL7 v2 DTM: YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]. Vital signs need at least the minute.
_HL7_DTM = re.compile(
    r"(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})?(?:\.(\d{1,4}))?(?:([+-])(\d{2})(\d{2}))?"
)
# FHIR dateTime / instant with a time: YYYY-MM-DDThh:mm:ss[.fff][Z|+hh:mm].
_FHIR_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:\d{2})?"
)


def _to_ms(year: str, month: str, day: str, hour: str, minute: str, second: str | None,
           fraction: str | None, offset_minutes: int) -> int:
    try:
        local = dt.datetime(int(year), int(month), int(day), int(hour), int(minute),
                            int(second or 0), tzinfo=dt.UTC)
    except ValueError as exc:
        raise ObservationError("bad_timestamp", str(exc)) from exc
    millis = int((fraction or "0")[:3].ljust(3, "0"))
    return int(local.timestamp()) * 1000 + millis - offset_minutes * 60_000


def hl7_time_ms(text: str) -> int:
    """An HL7 v2 DTM/TS value (component 1 of a TS field) in UTC milliseconds."""
    match = _HL7_DTM.fullmatch(text.strip())
    if match is None:
        raise ObservationError("bad_timestamp", f"{text!r} is not an HL7 time to the minute")
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
    offset = 0
    if sign:
        offset = (int(off_h) * 60 + int(off_m)) * (1 if sign == "+" else -1)
    return _to_ms(year, month, day, hour, minute, second, fraction, offset)


def fhir_time_ms(text: str) -> int:
    """A FHIR dateTime or instant with a time of day, in UTC milliseconds."""
    if not isinstance(text, str):
        raise ObservationError("bad_timestamp", f"effective time {text!r} is not a string")
    match = _FHIR_DATETIME.fullmatch(text.strip())
    if match is None:
        raise ObservationError("bad_timestamp", f"{text!r} is not a FHIR dateTime with a time")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    offset = 0
    if zone and zone != "Z":
        hours, minutes = zone[1:].split(":")
        offset = (int(hours) * 60 + int(minutes)) * (1 if zone[0] == "+" else -1)
    return _to_ms(year, month, day, hour, minute, second, fraction, offset)


def check_not_ahead(device_time_ms: int, received_ms: int, max_ahead_ms: int = MAX_AHEAD_MS) -> None:
    """Raise ObservationError (future_time) when ``device_time_ms`` is more than
    ``max_ahead_ms`` after ``received_ms``. A receive time of 0 or less means none is known
    (offline tools and benchmarks): nothing is checked then."""
    if received_ms > 0 and device_time_ms - received_ms > max_ahead_ms:
        try:
            shown = dt.datetime.fromtimestamp(device_time_ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        except (OverflowError, ValueError, OSError):
            shown = f"{device_time_ms} ms"
        raise ObservationError(
            "future_time", f"device time {shown} is {(device_time_ms - received_ms) // 1000} s ahead "
            f"of the receive time (tolerance {max_ahead_ms // 1000} s)")
