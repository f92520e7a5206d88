"""Cut a file or stream holding several gateway messages into single messages.

HL7 v2: MLLP frames, or messages separated by blank lines (a new MSH also starts a new
message); batch envelopes (FHS, BHS, BTS, FTS) are dropped. FHIR and JSON: one document per
file, or NDJSON (one per line). Bytes that belong to no message are returned as messages
too, so that they are rejected with a reason rather than dropped.

>>> split_messages(b"MSH|a\\nOBX|1\\n\\nMSH|b\\r\\nOBX|2", "hl7")
[b'MSH|a\\rOBX|1', b'MSH|b\\rOBX|2']
>>> split_messages(b'{"a": 1}\\n{"b": 2}\\n', "json")
[b'{"a": 1}', b'{"b": 2}']
"""

from __future__ import annotations

import re

import orjson

_LINES = re.compile(rb"\r\n|\r|\n")
_BATCH_ENVELOPE = (b"FHS", b"BHS", b"BTS", b"FTS")


def split_messages(data: bytes, fmt: str) -> list[bytes]:
    """The single messages in ``data`` of format ``fmt`` ('hl7', 'fhir' or 'json')."""
    if fmt == "hl7":
        return _split_hl7(data)
    if not data.strip():
        return []
    try:
        orjson.loads(data)
        return [data.strip()]
    except orjson.JSONDecodeError:
        return [line.strip() for line in _LINES.split(data) if line.strip()]


def _split_hl7(data: bytes) -> list[bytes]:
    if b"\x0b" in data:
        messages = []
        for chunk in data.split(b"\x0b"):
            body, _, trailer = chunk.partition(b"\x1c")
            for piece in (body, trailer):
                if piece.strip():
                    messages.append(piece.strip(b" \t\r\n"))
        return messages
    messages: list[bytes] = []
    current: list[bytes] = []
    for line in _LINES.split(data):
        stripped = line.strip()
        if not stripped or stripped.startswith(b"MSH") or stripped[:3] in _BATCH_ENVELOPE:
            if current:
                messages.append(b"\r".join(current))
            current = []
            if not stripped or stripped[:3] in _BATCH_ENVELOPE:
                continue
        current.append(line.rstrip())
    if current:
        messages.append(b"\r".join(current))
    return messages
