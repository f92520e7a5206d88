"""The ingest stage's pure batch step: what goes to which partition, and nothing lost."""

from __future__ import annotations

import orjson

from vitalstream.ingest import DEAD_LETTER_ORIGINAL_MAX
from vitalstream.ingest_stage import ROWS_PER_RECORD, RawMessage, ingest_batch, partition_for
from vitalstream.samples import sample_from_row


def reading(patient: str, t_ms: int, hr: float = 80.0) -> bytes:
    return orjson.dumps({"patient_id": patient, "ward": "4B", "bed": "1", "parameter": "heart_rate",
                         "value": hr, "device_time_ms": t_ms, "source": "m1"})


def test_every_message_ends_as_samples_or_one_dead_letter() -> None:
    messages = [RawMessage(reading(f"p{i % 7}", 1000 * i)) for i in range(50)]
    messages += [RawMessage(b"{not json", source="vitals.raw/0@9"), RawMessage(b"x" * (2 << 20))]
    batch = ingest_batch(messages, received_ms=5, partitions=4)
    assert sum(batch.messages_in.values()) == 52
    assert sum(batch.accepted.values()) == 50 and len(batch.dead_letters) == 2
    assert {reason for (_, reason) in batch.rejected} == {"not_json", "too_large"}
    rows = [sample_from_row(r) for _, v in batch.vitals for r in orjson.loads(v)["rows"]]
    assert len(rows) == batch.samples == 50


def test_a_patients_samples_go_to_the_partition_its_key_hashes_to_in_order() -> None:
    # The monitor's table writes a patient's changelog by key; the samples must be read
    # from that same partition, in the order the devices sent them.
    messages = [RawMessage(reading(f"p{i % 5}", 1000 * i)) for i in range(40)]
    batch = ingest_batch(messages, received_ms=0, partitions=3)
    for partition, value in batch.vitals:
        samples = [sample_from_row(r) for r in orjson.loads(value)["rows"]]
        assert all(partition_for(s.patient_id, 3) == partition for s in samples)
        for patient in {s.patient_id for s in samples}:
            times = [s.device_time_ms for s in samples if s.patient_id == patient]
            assert times == sorted(times)


def test_large_batches_are_cut_into_records_below_the_broker_limit() -> None:
    messages = [RawMessage(reading("p1", i)) for i in range(ROWS_PER_RECORD * 2 + 5)]
    batch = ingest_batch(messages, received_ms=0, partitions=1)
    assert len(batch.vitals) == 3
    assert max(len(v) for _, v in batch.vitals) < 1_000_000


def test_dead_letter_of_a_huge_message_fits_the_broker_and_names_the_original() -> None:
    huge = b"{" + b" " * (3 << 20)
    batch = ingest_batch([RawMessage(huge, source="vitals.raw/2@77")], received_ms=0, partitions=1)
    (_, letter), = batch.dead_letters
    record = orjson.loads(letter)
    assert len(letter) < 1_000_000
    assert record["original_truncated"] is True and record["original_bytes"] == len(huge)
    assert record["source"] == "vitals.raw/2@77"
    assert DEAD_LETTER_ORIGINAL_MAX < len(huge)


def test_a_message_the_parsers_did_not_foresee_is_dead_lettered_not_fatal(monkeypatch) -> None:
    # One poisonous message must not stop ingestion for every ward: the batch is retried
    # message by message and the culprit dead-lettered as internal_error.
    import vitalstream.ingest_stage as stage

    real = stage.parse_raw

    def fragile(raw: bytes, received_ms: int, fmt=None, *rest):
        if raw == b"poison":
            raise RuntimeError("unforeseen")
        return real(raw, received_ms, fmt, *rest)

    monkeypatch.setattr(stage, "parse_raw", fragile)
    messages = [RawMessage(reading("p1", 1000)), RawMessage(b"poison"), RawMessage(reading("p2", 2000))]
    batch = stage.safe_ingest_batch(messages, received_ms=0, partitions=2)
    assert batch.samples == 2
    assert [orjson.loads(v)["reason"] for _, v in batch.dead_letters] == ["internal_error"]


def test_device_time_beyond_any_calendar_is_rejected_at_the_edge() -> None:
    import json

    far = json.dumps({"patient_id": "p", "parameter": "heart_rate", "value": 80,
                      "device_time_ms": 10**30}).encode()
    batch = ingest_batch([RawMessage(far)], received_ms=0, partitions=1)
    assert sum(batch.rejected.values()) == 1 and batch.samples == 0


def test_a_dead_letter_names_the_consumer_record_it_came_from() -> None:
    # The stage passes the consumer record itself; its place is written out for a dead letter only.
    class Record:
        topic, partition, offset = "vitals.raw", 3, 1234

    batch = ingest_batch([RawMessage(b"{not json", record=Record()),
                          RawMessage(reading("p1", 1000), record=Record())], received_ms=0, partitions=1)
    (_, letter), = batch.dead_letters
    assert orjson.loads(letter)["source"] == "vitals.raw/3@1234"
    assert batch.samples == 1
