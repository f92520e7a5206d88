"""The FHIR HTTP front door through a real socket, publishing to the real broker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web

from vitalstream.gateway.fhir_http import fhir_app
from vitalstream.gateway.publish import RawPublisher
from vitalstream.ingest import MAX_MESSAGE_BYTES
from vitalstream.kafka import consumer, ensure_topics
from vitalstream.settings import Settings

pytestmark = pytest.mark.broker

BUNDLE = (Path(__file__).parent.parent / "ingest" / "data" / "fhir_transaction_bp_panel.json").read_bytes()
FHIR_JSON = {"Content-Type": "application/fhir+json"}
HEART_RATE = orjson.dumps({
    "resourceType": "Observation", "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
    "subject": {"reference": "Patient/pat-1"}, "effectiveDateTime": "2026-03-15T10:15:00+01:00",
    "valueQuantity": {"value": 118, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"}})
# A temperature of 98.6 declared as Celsius: a mapping error at the gateway.
WRONG_UNIT = HEART_RATE.replace(b"8867-4", b"8310-5").replace(b"118", b"98.6").replace(b'"/min"', b'"Cel"')


async def start(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}"


async def test_bundle_and_observation_posts_reach_vitals_raw(broker):
    settings = Settings(kafka_bootstrap=broker.bootstrap, topic_partitions=1)
    await ensure_topics(settings)
    async with RawPublisher(settings) as publisher:
        runner, base = await start(fhir_app(publisher))
        try:
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{base}/fhir", data=BUNDLE, headers=FHIR_JSON) as response:
                    transaction = (response.status, await response.json(content_type=None))
                async with http.post(f"{base}/fhir/Observation", data=HEART_RATE, headers=FHIR_JSON) as response:
                    single = (response.status, await response.json(content_type=None))
                async with http.post(f"{base}/fhir/Observation", data=WRONG_UNIT, headers=FHIR_JSON) as response:
                    wrong = (response.status, await response.json(content_type=None))
                async with http.post(f"{base}/fhir", data=b"<Observation/>",
                                     headers={"Content-Type": "application/xml"}) as response:
                    xml = (response.status, await response.json(content_type=None))
                async with http.post(f"{base}/fhir", data=b"{" * (MAX_MESSAGE_BYTES + 10),
                                     headers=FHIR_JSON) as response:
                    huge = response.status
                async with http.get(f"{base}/metrics") as response:
                    exposition = await response.text()
        finally:
            await runner.cleanup()

    assert transaction[0] == 200 and transaction[1]["type"] == "transaction-response"
    assert len(transaction[1]["entry"]) == 11
    assert single[0] == 200 and single[1]["resourceType"] == "OperationOutcome"
    assert single[1]["issue"][0]["diagnostics"].startswith("accepted: 1 samples")
    # The mapping error is told to the sender as an OperationOutcome with the reason code.
    assert wrong[0] == 422 and wrong[1]["resourceType"] == "OperationOutcome"
    assert wrong[1]["issue"][0]["details"]["coding"][0]["code"] == "implausible_value"
    assert xml[0] == 415 and xml[1]["issue"][0]["severity"] == "error"
    assert huge == 413
    assert 'vitalstream_gateway_outcomes_total{door="fhir",outcome="accepted",reason=""}' in exposition

    reader = consumer(settings, settings.topic_raw)
    await reader.start()
    values = []
    try:
        async with asyncio.timeout(30):
            while len(values) < 3:
                for batch in (await reader.getmany(timeout_ms=500)).values():
                    values.extend(record.value for record in batch)
    finally:
        await reader.stop()
    # Accepted and rejected content is on the raw topic (ingest dead-letters the latter);
    # refused requests (media type, size) were never taken, and the sender was told so.
    assert values == [BUNDLE, HEART_RATE, WRONG_UNIT]
