"""Issue 23 item 2 on the real broker, with the worker and the station running: whoever can
write to a topic but holds no key (or the wrong one) cannot silence a patient or fake the
board. Each forgery is refused, counted by reason, dead-lettered where the worker takes
control records, and the real high alert stays open and unacknowledged on the board.
A genuine acknowledgement by a signed-in nurse still goes through at the end."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from faults.faultkit import Message, read_topic, send, wait_for
from testkit import actor, browser, keyring, make_users, send_signed, sign_in

from vitalstream.broker import EmbeddedBroker
from vitalstream.delivery.process import StationProcess
from vitalstream.kafka import ensure_topics
from vitalstream.process import WorkerProcess
from vitalstream.settings import Settings
from vitalstream.signing import Keyring, SignatureError, generate_keys

pytestmark = [pytest.mark.security, pytest.mark.faults, pytest.mark.broker, pytest.mark.timeout(240)]

PATIENT, WARD, BED = "p-det", "4B", "12"
TOKEN = "wall-board-token-4B-forgery-test"
HOUSE = {"user_id": "u-house", "role": "physician", "name": "Dr. House (ICU desk)"}


def readings(t_ms: int, frac: float) -> bytes:
    values = {"heart_rate": 80 + 45 * frac, "resp_rate": 16 + 12 * frac, "spo2": 97 - 7 * frac,
              "systolic_bp": 120 - 20 * frac, "temperature": 37.0 + 1.6 * frac,
              "consciousness": "A", "on_oxygen": False}
    return orjson.dumps([{"patient_id": PATIENT, "ward": WARD, "bed": BED, "parameter": name, "value": value,
                          "device_time_ms": t_ms, "source": "monitor-12"} for name, value in values.items()])


class Ward:
    """Broker, worker and station with one deteriorating patient whose high alert is open."""

    def __init__(self, broker: EmbeddedBroker, tmp: Path) -> None:
        self.settings = Settings(kafka_bootstrap=broker.bootstrap)
        self.tmp = tmp

    def open_alert(self) -> dict[str, Any]:
        """The patient's open clinical alert, as the worker published it."""
        alerts = [orjson.loads(r.value) for r in asyncio.run(read_topic(
            self.settings, self.settings.topic_alerts, lambda rs: False, 2)) if signed_by_worker(r)]
        open_ = {}
        for alert in alerts:
            if alert.get("replaces"):
                open_.pop(alert["replaces"], None)
            if alert["status"] in ("raised", "escalated", "reraised", "acknowledged"):
                open_[alert["alert_id"]] = alert
            else:
                open_.pop(alert["alert_id"], None)
        clinical = [a for a in open_.values() if a["kind"] == "clinical"]
        return clinical[-1] if clinical else {}

    def board(self) -> dict[str, Any]:
        async def get() -> dict[str, Any]:
            async with browser() as client, client.get(
                    f"{self.station.url}/api/state", headers={"Authorization": f"Bearer {TOKEN}"}) as response:
                return (await response.json())["wards"][WARD]
        return asyncio.run(get())

    def dead_letters(self) -> list[dict[str, Any]]:
        return [orjson.loads(r.value) for r in asyncio.run(read_topic(
            self.settings, self.settings.topic_deadletter, lambda rs: False, 1.5))]


@pytest.fixture(scope="module")
def ward(module_broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ward]:
    tmp = tmp_path_factory.mktemp("forgery")
    setup = Ward(module_broker, tmp)
    asyncio.run(ensure_topics(setup.settings))
    make_users(tmp / "users.json", ("anna", "Anna Smith", "bedside_nurse", ["4B"]),
               ("carla", "Carla Diaz", "bedside_nurse", ["4C"]))
    with WorkerProcess(module_broker.bootstrap, log_path=tmp / "worker.log") as worker, \
            StationProcess(module_broker.bootstrap, {TOKEN: ["4B"]}, log_path=tmp / "station.log",
                           users_file=tmp / "users.json") as station:
        setup.worker, setup.station = worker, station
        end_ms = int(time.time() * 1000)
        messages = [Message(PATIENT.encode(), readings(end_ms - (59 - m) * 60_000, m / 59), 7) for m in range(60)]
        asyncio.run(send(setup.settings, messages))
        assert wait_for(lambda: setup.open_alert().get("priority") == "high", 60), "no real high alert"
        assert wait_for(lambda: any(a["priority"] == "high" for a in setup.board()["alerts"]), 20)
        yield setup


def refused(ward: Ward, source: str, reason: str) -> float:
    text = ward.worker.scrape()
    line = f'vitalstream_control_refused_total{{reason="{reason}",source="{source}"}}'
    return next((float(row.split()[-1]) for row in text.splitlines() if row.startswith(line)), 0.0)


def station_refused(ward: Ward, kind: str, reason: str) -> float:
    line = f'vitalstream_station_refused_total{{reason="{reason}",type="{kind}"}}'
    return next((float(row.split()[-1]) for row in ward.station.scrape().splitlines() if row.startswith(line)), 0.0)


def assert_real_alert_stays(ward: Ward, alert_id: str) -> None:
    alert = ward.open_alert()
    assert alert["alert_id"] == alert_id and alert["status"] != "acknowledged", "the real alert was silenced"
    shown = {a["alert_id"]: a for a in ward.board()["alerts"]}
    assert alert_id in shown and shown[alert_id]["status"] != "acknowledged"


def forged_ack(alert: dict[str, Any]) -> bytes:
    return orjson.dumps({"patient_id": PATIENT, "alert_id": alert["alert_id"], "ward": WARD, "actor": HOUSE,
                         "actor_wards": [WARD], "by": HOUSE["name"], "at_ms": int(time.time() * 1000)})


def test_forged_acknowledgements_on_alerts_ack_are_refused_counted_and_dead_lettered(ward: Ward) -> None:
    alert = ward.open_alert()
    settings = ward.settings
    # Unsigned, as anyone who can reach the topic would write it.
    asyncio.run(send_signed(settings, settings.topic_acks, WARD.encode(), forged_ack(alert), service=None))
    # Signed with a key of the right id but another secret (a guessed or stale key).
    impostor = Keyring({"station-1": ("station", generate_keys(["station"])["station-1"]["secret"].encode())},
                       current="station-1")
    value = forged_ack(alert)
    asyncio.run(_send_with(settings, settings.topic_acks, WARD.encode(), value,
                           impostor.sign(settings.topic_acks, WARD.encode(), value)))
    assert wait_for(lambda: refused(ward, "ack", "unsigned") >= 1 and refused(ward, "ack", "bad_signature") >= 1, 20)
    letters = [d for d in ward.dead_letters() if d["format"] == "ack"]
    assert {d["reason"] for d in letters} >= {"unsigned", "bad_signature"}
    assert all(d["source"].startswith(settings.topic_acks + "/") for d in letters)
    time.sleep(1.0)
    assert_real_alert_stays(ward, alert["alert_id"])


def test_a_forged_acknowledgement_written_straight_onto_vitals_is_refused(ward: Ward) -> None:
    alert = ward.open_alert()
    settings = ward.settings
    body = orjson.dumps({"ack": orjson.loads(forged_ack(alert))})
    asyncio.run(send_signed(settings, settings.topic_vitals, PATIENT.encode(), body, service=None))
    # A station's key is not enough on vitals: only the worker's forwarders write control there.
    asyncio.run(send_signed(settings, settings.topic_vitals, PATIENT.encode(), body, service="station"))
    assert wait_for(lambda: refused(ward, "vitals", "unsigned") >= 1
                    and refused(ward, "vitals", "wrong_service") >= 1, 20)
    assert {"unsigned", "wrong_service"} <= {d["reason"] for d in ward.dead_letters() if d["format"] == "vitals"}
    time.sleep(1.0)
    assert_real_alert_stays(ward, alert["alert_id"])


def test_a_correctly_signed_acknowledgement_from_a_nurse_of_another_ward_is_refused(ward: Ward) -> None:
    alert = ward.open_alert()
    settings = ward.settings
    carla = {"patient_id": PATIENT, "alert_id": alert["alert_id"], "ward": WARD,
             "actor": actor(name="Carla Diaz", user_id="u-carla"), "actor_wards": ["4C"],
             "at_ms": int(time.time() * 1000)}
    asyncio.run(send_signed(settings, settings.topic_acks, WARD.encode(), orjson.dumps(carla)))
    # The same nurse claiming the alert is on her ward: the patient's worker knows better.
    lying = {**carla, "ward": "4C", "actor_wards": ["4C"]}
    asyncio.run(send_signed(settings, settings.topic_acks, b"4C", orjson.dumps(lying)))
    assert wait_for(lambda: refused(ward, "ack", "ward") >= 2, 20)
    assert "ward" in {d["reason"] for d in ward.dead_letters() if d["format"] == "ack"}
    time.sleep(1.0)
    assert_real_alert_stays(ward, alert["alert_id"])


def test_forged_and_out_of_bounds_settings_cannot_silence_the_patient(ward: Ward) -> None:
    alert = ward.open_alert()
    settings = ward.settings
    now_ms = int(time.time() * 1000)

    def control(record: dict[str, Any]) -> bytes:
        return orjson.dumps({"patient_id": PATIENT, "ward": WARD, "bed": BED,
                             "record": {"set_at_ms": now_ms, **record}})

    silence = {"news2_medium": 19, "news2_high": 20, "accepted_ranges": {"spo2": [0, 350]}}
    asyncio.run(send_signed(settings, settings.topic_patient_settings, WARD.encode(),
                            control({**silence, "actor": HOUSE}), service=None))
    # Signed by the station (or a bug in it), still outside every clinical bound.
    asyncio.run(send_signed(settings, settings.topic_patient_settings, WARD.encode(),
                            control({**silence, "actor": HOUSE})))
    # A nurse loosening: the worker checks the role again from the signed actor.
    asyncio.run(send_signed(settings, settings.topic_patient_settings, WARD.encode(),
                            control({"news2_high": 9, "actor": actor()})))
    assert wait_for(lambda: refused(ward, "settings", "unsigned") >= 1
                    and refused(ward, "settings", "out_of_bounds") >= 1
                    and refused(ward, "settings", "role") >= 1, 20)
    reasons = {d["reason"] for d in ward.dead_letters() if d["format"] == "settings"}
    assert {"unsigned", "out_of_bounds", "role"} <= reasons
    time.sleep(1.0)
    assert_real_alert_stays(ward, alert["alert_id"])


def test_forged_alerts_resolutions_and_bed_states_never_reach_the_board(ward: Ward) -> None:
    alert = ward.open_alert()
    settings = ward.settings
    crash = {**alert, "alert_id": "al-forged-crash", "event_id": "ev-forged-crash", "bed": "1", "patient_id": "p-x",
             "status": "raised", "summary": "Bed 1, Ward 4B: NEWS2 12 (high). Call the crash team."}
    resolved = {**alert, "event_id": "ev-forged-resolved", "status": "resolved"}
    tile = next(b for b in ward.board()["beds"] if b["bed"] == BED)
    calm = {**tile, "news2": {**(tile.get("news2") or {}), "total": 0}, "time_ms": int(time.time() * 1000)}
    for topic, body in ((settings.topic_alerts, crash), (settings.topic_alerts, resolved),
                        (settings.topic_bed_state, calm)):
        asyncio.run(send_signed(settings, topic, WARD.encode(), orjson.dumps(body), service=None))
    # A station's key cannot sign alerts either.
    asyncio.run(send_signed(settings, settings.topic_alerts, WARD.encode(), orjson.dumps(resolved)))
    assert wait_for(lambda: station_refused(ward, "alert", "unsigned") >= 2
                    and station_refused(ward, "bed", "unsigned") >= 1
                    and station_refused(ward, "alert", "wrong_service") >= 1, 20)
    board = ward.board()
    assert "al-forged-crash" not in {a["alert_id"] for a in board["alerts"]}
    assert alert["alert_id"] in {a["alert_id"] for a in board["alerts"]}, "a forged resolved removed the alert"
    shown = next(b for b in board["beds"] if b["bed"] == BED)
    assert shown == tile, "a forged ward-state row changed the tile"
    # `vitalstream subscribe` refuses them too: it prints the real alerts only (it follows the
    # topic until stopped; 15 s is long enough to read it from the beginning).
    try:
        done = subprocess.run([sys.executable, "-m", "vitalstream", "subscribe", "--ward", WARD,
                               "--from-beginning", "--json"], capture_output=True, timeout=15,
                              env={**os.environ, "VITALSTREAM_KAFKA_BOOTSTRAP": settings.kafka_bootstrap})
        out, err = done.stdout, done.stderr
    except subprocess.TimeoutExpired as stopped:
        out, err = stopped.stdout or b"", stopped.stderr or b""
    printed = [orjson.loads(line) for line in out.decode().splitlines()]
    assert alert["alert_id"] in {a["alert_id"] for a in printed}
    assert b"crash team" not in out and b"ev-forged-resolved" not in out
    assert b"refused an alert record (unsigned" in err and b"wrong_service" in err


def test_a_signed_in_nurse_of_the_ward_still_acknowledges(ward: Ward) -> None:
    alert = ward.open_alert()

    async def acknowledge() -> int:
        async with browser() as anna:
            assert await sign_in(anna, ward.station.url, "anna") == 303
            async with anna.post(f"{ward.station.url}/api/ack", json={"alert_id": alert["alert_id"]}) as response:
                return response.status

    assert asyncio.run(acknowledge()) == 202, (alert, [(a["alert_id"], a["status"]) for a in ward.board()["alerts"]])
    assert wait_for(lambda: ward.open_alert().get("status") == "acknowledged", 20)
    acked = ward.open_alert()
    assert acked["payload"]["ack"]["actor"]["name"] == "Anna Smith"
    assert acked["payload"]["ack"]["actor"]["role"] == "bedside_nurse"


def signed_by_worker(record: Any) -> bool:
    try:
        keyring().verify(record.topic, record.key, record.value, record.headers, {"worker"})
        return True
    except SignatureError:
        return False


async def _send_with(settings: Settings, topic: str, key: bytes, value: bytes, headers: list) -> None:
    from vitalstream.kafka import producer

    out = producer(settings)
    await out.start()
    try:
        await out.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await out.stop()
