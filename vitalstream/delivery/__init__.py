"""Delivery: alerts to nursing stations (SSE, WebSocket, the ward board) and to EHRs and
alarm managers (FHIR R4 Flag, HL7 v2 ORU^R40).

    store.py   open alerts, bed states and resume cursors per ward (pure)
    feeds.py   fan-out from the store to connections, transport framing
    config.py  station tokens and wards, service settings
    export.py  alert -> FHIR Flag, alert -> ORU^R40 (pure)
    service.py the aiohttp service and its Kafka consumer and producer
    process.py the service in a child process (tests, benchmark, demo)
"""

from vitalstream.delivery.config import Station, StationAccess, StationConfig, StationConfigError
from vitalstream.delivery.export import alert_to_fhir_flag, alert_to_oru_r40
from vitalstream.delivery.store import Position, WardStore, decode_cursor, encode_cursor

__all__ = [
    "Position", "Station", "StationAccess", "StationConfig", "StationConfigError", "WardStore",
    "alert_to_fhir_flag", "alert_to_oru_r40", "decode_cursor", "encode_cursor",
]
