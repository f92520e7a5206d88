"""The census at the FHIR door on the real broker: an Encounter becomes a census record on
the census topic; an unknown bed is refused with 422 and dead-lettered."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest

from vitalstream.gateway.census import CensusDoor
from vitalstream.gateway.fhir_http import fhir_app
from vitalstream.gateway.publish import RawPublisher
from vitalstream.ingest.adt import KnownBeds
from vitalstream.kafka import consumer, ensure_topics
from vitalstream.settings import Settings

pytestmark = [pytest.mark.broker, pytest.mark.oversight]


def encounter(bed: str, status: str = "in-progress") -> bytes:
    return orjson.dumps({"resourceType": "Encounter", "id": "e1", "status": status,
                         "subject": {"identifier": {"value": "MRN-5"}},
                         "location": [{"location": {"display": f"4B/{bed}"}}]})


async def first(settings: Settings, topic: str) -> dict:
    source = consumer(settings, topic)
    await source.start()
    try:
        async with asyncio.timeout(20):
            while True:
                for records in (await source.getmany(timeout_ms=300)).values():
                    return orjson.loads(records[0].value)
    finally:
        await source.stop()


async def test_encounter_is_a_census_record_and_an_unknown_bed_is_refused(broker) -> None:
    settings = Settings(kafka_bootstrap=broker.bootstrap, topic_partitions=1)
    await ensure_topics(settings)
    async with RawPublisher(settings) as publisher:
        app = fhir_app(publisher, census=CensusDoor(publisher, KnownBeds.parse('{"4B": "1-24"}')))
        runner = aiohttp.web.AppRunner(app)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/fhir/Encounter"
        headers = {"Content-Type": "application/fhir+json"}
        try:
            async with aiohttp.ClientSession() as session:
                async with session.post(url, data=encounter("31"), headers=headers) as refused:
                    outcome = await refused.json(content_type=None)
                    assert refused.status == 422
                    assert outcome["issue"][0]["details"]["coding"][0]["code"] == "unknown_bed"
                async with session.post(url, data=encounter("5"), headers=headers) as taken:
                    assert taken.status == 200
        finally:
            await runner.cleanup()
    record = await first(settings, settings.topic_census)
    assert (record["event"], record["patient_id"], record["ward"], record["bed"], record["source"]) == (
        "admit", "MRN-5", "4B", "5", "fhir")
    letter = await first(settings, settings.topic_deadletter)
    assert letter["reason"] == "unknown_bed"
