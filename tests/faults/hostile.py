"""Hostile gateway messages in the three formats, made deterministically from valid ones:
truncated, wrong types, huge, deeply nested, odd Unicode, NaN/Infinity, timestamps far in
the past or future, duplicates, unknown codes, noise. Every hostile message except the
duplicates is about a hostile patient (the valid patient's id rewritten to one of the
same length), so the valid patients' alerts can be compared with a clean run."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator

import orjson
from faults.faultkit import Message

from vitalstream.ingest import MAX_MESSAGE_BYTES

VALID_PREFIX = b"sim-"
HOSTILE_PREFIX = b"hx--"  # same length: rewritten messages keep every offset
KINDS = ("truncated", "wrong_type", "huge", "nested", "unicode", "non_finite", "far_time",
         "duplicate", "unknown_code", "noise")
HUGE_EVERY = 1000  # 1 MiB messages are few: each costs the broker a megabyte


def hostile_copy(message: Message) -> bytes:
    return message.value.replace(VALID_PREFIX, HOSTILE_PREFIX)


def _format(raw: bytes) -> str:
    if raw.lstrip().startswith(b"MSH"):
        return "hl7"
    return "fhir" if b'"resourceType"' in raw[:4096] else "json"


def _leaves(node: object, path: tuple = ()) -> Iterator[tuple]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _leaves(value, (*path, index))
    else:
        yield path


def _set(node: object, path: tuple, value: object) -> None:
    for step in path[:-1]:
        node = node[step]  # type: ignore[index]
    node[path[-1]] = value  # type: ignore[index]


def _hl7_field(raw: bytes, rng: random.Random, replacement: bytes) -> bytes:
    segments = raw.split(b"\r")
    obx = [i for i, s in enumerate(segments) if s.startswith(b"OBX")] or [0]
    index = rng.choice(obx)
    fields = segments[index].split(b"|")
    fields[rng.randrange(1, len(fields))] = replacement
    segments[index] = b"|".join(fields)
    return b"\r".join(segments)


WRONG_VALUES: tuple[object, ...] = ("abc", [], {}, None, True, "", "97;DROP TABLE", -1e308, 2**63 - 1)


def wrong_type(raw: bytes, rng: random.Random) -> bytes:
    if _format(raw) == "hl7":
        return _hl7_field(raw, rng, rng.choice([b"abc", b"", b"^^^^", b"~~~", b"12.3.4"]))
    document = orjson.loads(raw)
    paths = list(_leaves(document))
    _set(document, rng.choice(paths), rng.choice(WRONG_VALUES))
    return orjson.dumps(document)


def non_finite(raw: bytes, rng: random.Random) -> bytes:
    token = rng.choice([b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999"])
    if _format(raw) == "hl7":
        segments = raw.split(b"\r")
        for i, segment in enumerate(segments):
            if segment.startswith(b"OBX"):
                fields = segment.split(b"|")
                fields[5] = token
                segments[i] = b"|".join(fields)
                break
        return b"\r".join(segments)
    # orjson writes no NaN; put the bare token where a number was, as a careless gateway would.
    return re.sub(rb'("value"\s*:\s*)-?[0-9.]+', rb"\g<1>" + token, raw, count=1)


def far_time(raw: bytes, rng: random.Random) -> bytes:
    fmt = _format(raw)
    if fmt == "hl7":
        stamp = rng.choice([b"99991231235959", b"00010101000000", b"19000101000000", b"21000101000000"])
        return re.sub(rb"\|20\d{12}(?=\|)", b"|" + stamp, raw)
    if fmt == "fhir":
        stamp = rng.choice([b"9999-12-31T23:59:59Z", b"0001-01-01T00:00:00Z", b"2100-01-01T00:00:00Z"])
        return re.sub(rb"20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?", stamp, raw)
    stamp = rng.choice([b"0", b"-1", b"4102444800000", b"253402300799000", b"100000000000000000000"])
    return re.sub(rb'("device_time_ms"\s*:\s*)\d+', rb"\g<1>" + stamp, raw)


def unknown_code(raw: bytes, rng: random.Random) -> bytes:
    fmt = _format(raw)
    if fmt == "hl7":
        return re.sub(rb"\|\d{6}\^MDC_[A-Z0-9_]+\^MDC\|", b"|999999^MDC_UNKNOWN_THING^MDC|", raw, count=1)
    if fmt == "fhir":
        return re.sub(rb'"code":"\d{4,5}-\d"', b'"code":"00000-0"', raw)
    return re.sub(rb'"parameter":"[a-z_0-9]+"', b'"parameter":"blood_sugar"', raw, count=1)


def unicode_noise(raw: bytes, rng: random.Random) -> bytes:
    odd = rng.choice(["\u202e", "\u200b", "\ufeff", "\U0001f6d1", "\u0000", "e\u0301", "\uffff"]).encode()
    invalid = rng.choice([b"\xed\xa0\x80", b"\xff\xfe", b"\xc0\xaf", b"\x80"])
    at = raw.find(HOSTILE_PREFIX) + len(HOSTILE_PREFIX)
    piece = odd if rng.random() < 0.5 else invalid
    return raw[:at] + piece + raw[at:]


def nested(raw: bytes, rng: random.Random) -> bytes:
    depth = rng.choice([200, 5_000, 100_000])
    if rng.random() < 0.5:
        return b"[" * depth + b"]" * depth
    return (b'{"resourceType":"Observation","extension":' + b"[" * depth + b"]" * depth + b"}")


def huge(raw: bytes, rng: random.Random) -> bytes:
    size = MAX_MESSAGE_BYTES + rng.choice([1, 4096])
    return raw + b" " * (size - len(raw))


def noise(raw: bytes, rng: random.Random) -> bytes:
    return rng.choice([b"", b"\x00", b"\x0b\x1c\r", bytes(rng.randrange(256) for _ in range(64)),
                       b"MSH|", b'{"resourceType":', b"null", b"[]", b"{}", b'"x"'])


def hostile_messages(valid: list[Message], count: int, seed: int = 10) -> list[tuple[str, Message, int]]:
    """``count`` hostile messages, kinds in turn, each made from a random valid message:
    (kind, message, the first position among the valid messages it may be sent at). A
    duplicate is a gateway sending a message again, so it comes after its original."""
    rng = random.Random(seed)
    out = []
    for index in range(count):
        kind = KINDS[index % len(KINDS)]
        position = rng.randrange(len(valid))
        base = valid[position]
        if kind == "huge" and index % HUGE_EVERY >= len(KINDS):
            kind = "truncated"
        if kind == "duplicate":
            out.append((kind, base, position + 1))
            continue
        raw = hostile_copy(base)
        key = base.key.replace(VALID_PREFIX, HOSTILE_PREFIX)
        if kind == "truncated":
            raw = raw[:rng.randrange(0, max(1, len(raw) - 1))]
        elif kind == "wrong_type":
            raw = wrong_type(raw, rng)
        elif kind == "huge":
            raw = huge(raw, rng)
        elif kind == "nested":
            raw = nested(raw, rng)
        elif kind == "unicode":
            raw = unicode_noise(raw, rng)
        elif kind == "non_finite":
            raw = non_finite(raw, rng)
        elif kind == "far_time":
            raw = far_time(raw, rng)
        elif kind == "unknown_code":
            raw = unknown_code(raw, rng)
        else:
            raw = noise(raw, rng)
        out.append((kind, Message(key, raw, 0), 0))
    return out


def interleave(valid: list[Message], hostile: list[tuple[Message, int]], seed: int = 11) -> list[Message]:
    """Hostile messages spread at random between the valid ones (each at or after its
    earliest position), the valid ones in their order."""
    rng = random.Random(seed)
    before: dict[int, list[Message]] = {}
    for message, earliest in hostile:
        before.setdefault(rng.randrange(earliest, len(valid) + 1), []).append(message)
    out = []
    for index, message in enumerate(valid):
        out.extend(before.get(index, ()))
        out.append(message)
    out.extend(before.get(len(valid), ()))
    return out
