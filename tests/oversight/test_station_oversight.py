"""Oversight through the station on the real broker, with a real worker: escalation shown on
the board, accepting and answering, refusals, a snooze that ends by itself, a care goal."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from oversightkit import ENV, deteriorated, send
from testkit import PASSWORD, make_users

from vitalstream.broker import EmbeddedBroker
from vitalstream.delivery.process import StationProcess
from vitalstream.kafka import ensure_topics
from vitalstream.process import WorkerProcess
from vitalstream.settings import Settings

pytestmark = [pytest.mark.broker, pytest.mark.oversight]

TOKEN_4B = "token-for-ward-4B-oversight"
TOKEN_5C = "token-for-ward-5C-oversight"
# Named users of the user store: (user name, display name, role, wards).
USERS = [("ann", "Ann Bell", "bedside_nurse", ["4B"]), ("cat", "Cat Moss", "charge_nurse", ["4B"]),
         ("lee", "Dr Lee", "physician", ["4B"]), ("adm", "Ad Min", "admin", ["4B"]),
         ("fred", "Fred Far", "bedside_nurse", ["5C"])]
# What a body could claim: ignored, the station acts as the signed-in user.
DOCTOR = {"user_id": "u-lee", "role": "physician", "name": "Dr Lee"}


class Stack:
    def __init__(self, settings: Settings, station: StationProcess, worker: WorkerProcess, store: Any) -> None:
        self.settings, self.station, self.worker, self.store = settings, station, worker, store
        self.clients: dict[str, httpx.Client] = {}

    def user_id(self, username: str) -> str:
        return self.store.get(username).user_id

    def client(self, username: str) -> httpx.Client:
        """A client signed in as ``username`` (its session cookie kept), as a desk browser."""
        if username not in self.clients:
            client = httpx.Client(base_url=self.station.url, timeout=10, headers={"Origin": self.station.url})
            signed = client.post("/session", data={"username": username, "password": PASSWORD})
            assert signed.status_code == 303 and client.get("/api/me").status_code == 200, username
            self.clients[username] = client
        return self.clients[username]

    def post(self, path: str, body: dict[str, Any], user: str | None = "ann",
             token: str | None = None) -> httpx.Response:
        """POST as a signed-in user, or with a wall board's token, or as nobody."""
        if user is not None and token is None:
            return self.client(user).post(path, json=body)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.post(self.station.url + path, json=body, headers=headers, timeout=10)

    def alerts(self, ward: str = "4B", token: str = TOKEN_4B) -> list[dict[str, Any]]:
        return self.snapshot(ward, token)["alerts"]

    def snapshot(self, ward: str = "4B", token: str = TOKEN_4B) -> dict[str, Any]:
        response = httpx.get(self.station.url + "/api/state", params={"ward": ward},
                             headers={"Authorization": f"Bearer {token}"}, timeout=10)
        return response.json()["wards"][ward]

    def wait(self, condition: Callable[[], Any], timeout_s: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = condition()
            if found:
                return found
            time.sleep(0.3)
        raise AssertionError("timed out waiting on the board")

    def alert_of(self, patient_id: str, ward: str = "4B", token: str = TOKEN_4B) -> dict[str, Any] | None:
        return next((a for a in self.alerts(ward, token) if a["patient_id"] == patient_id), None)

    def raise_alert(self, patient_id: str, bed: str, ward: str = "4B") -> dict[str, Any]:
        send(self.settings, self.settings.topic_raw, *deteriorated(patient_id, ward, bed),
             key=patient_id.encode())
        token = TOKEN_4B if ward == "4B" else TOKEN_5C
        return self.wait(lambda: self.alert_of(patient_id, ward, token), 90)


@pytest.fixture(scope="module")
def stack(module_broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    settings = Settings(kafka_bootstrap=module_broker.bootstrap)
    asyncio.run(ensure_topics(settings))
    logs = tmp_path_factory.mktemp("oversight")
    store = make_users(logs / "users.json", *USERS)
    tokens = {TOKEN_4B: {"station": "4B desk", "wards": ["4B"]}, TOKEN_5C: {"station": "5C desk", "wards": ["5C"]}}
    with WorkerProcess(module_broker.bootstrap, env=ENV, log_path=logs / "worker.log") as worker, \
            StationProcess(module_broker.bootstrap, tokens, env=ENV, log_path=logs / "station.log",
                           users_file=logs / "users.json") as station:
        running = Stack(settings, station, worker, store)
        yield running
        for client in running.clients.values():
            client.close()


def test_board_shows_escalation_then_charge_nurse_accepts_and_answers(stack: Stack) -> None:
    alert = stack.raise_alert("p-one", "3")
    assert alert["oversight"]["holder"] == "bedside_nurse" and alert["oversight"]["waiting"] == "ack"
    called = stack.wait(lambda: (a := stack.alert_of("p-one")) and a["status"] == "called" and a)
    assert called["oversight"]["holder"] == "charge_nurse"
    assert called["raised_summary"].startswith("Bed 3, Ward 4B"), "the clinical text stays"
    alert_id = called["alert_id"]
    early = stack.post("/api/answer", {"alert_id": alert_id, "reason": "physician_informed"}, "cat")
    assert early.status_code == 409 and "acknowledge" in early.json()["error"]
    assert stack.post("/api/ack", {"alert_id": alert_id}, "cat").status_code == 202
    stack.wait(lambda: stack.alert_of("p-one")["status"] == "acknowledged")
    unknown = stack.post("/api/answer", {"alert_id": alert_id, "reason": "because"}, "cat")
    assert unknown.status_code == 400 and "unknown_reason" in unknown.json()["error"]
    # A typed actor in the body is ignored: the record names the signed-in user.
    answered = stack.post("/api/answer", {"alert_id": alert_id, "reason": "physician_informed",
                                          "actor": {"user_id": "u-someone", "role": "physician", "name": "X"}},
                          "cat")
    assert answered.status_code == 202
    shown = stack.wait(lambda: (a := stack.alert_of("p-one")) and a["status"] == "answered" and a)
    history = shown["oversight"]["history"]
    assert [(h["event"], h.get("role") or h.get("user_id")) for h in history] == [
        ("raised", "bedside_nurse"), ("called", "charge_nurse"), ("acknowledged", stack.user_id("cat")),
        ("answered", stack.user_id("cat"))]
    assert all(isinstance(h["at_ms"], int) for h in history)
    assert shown["oversight"]["waiting"] == "none"
    again = stack.post("/api/answer", {"alert_id": alert_id, "reason": "expected_or_known"}, "cat")
    assert again.status_code == 409, "an alert is answered once"


def test_refusals_are_clear_and_change_nothing(stack: Stack) -> None:
    alert = stack.raise_alert("p-two", "4")
    alert_id = alert["alert_id"]
    body = {"alert_id": alert_id, "duration_s": 3, "reason": "wash"}
    assert stack.post("/api/snooze", body, user=None).status_code == 401, "nobody signed in"
    assert stack.post("/api/snooze", body, "adm").status_code == 403, "an administrator does not act on alerts"
    assert stack.post("/api/snooze", body, token=TOKEN_4B).status_code == 403, "a wall board only views"
    assert stack.post("/api/snooze", body, "fred").status_code == 404, \
        "a nurse of another ward cannot see or act on it"
    assert stack.post("/api/ack", {"alert_id": alert_id}, "fred").status_code == 404
    assert stack.client("fred").get("/api/state", params={"ward": "4B"}).status_code == 403
    assert alert_id not in stack.client("fred").get("/api/state").text
    crossed = stack.client("ann").post("/api/snooze", json=body, headers={"Origin": "https://evil.example"})
    assert crossed.status_code == 403, "a cross-site post is refused"
    too_long = stack.post("/api/snooze", {**body, "duration_s": 3600})
    assert too_long.status_code == 400 and "at most 4 s" in too_long.json()["error"]
    goal = {"ward": "4B", "bed": "4", "goal": "comfort_care", "reason": "family wishes", "actor": DOCTOR}
    assert stack.post("/api/goal", goal).status_code == 403, "care goals are a physician's (a typed role is ignored)"
    time.sleep(1.0)
    now = stack.alert_of("p-two")
    assert now["event_id"] in (alert["event_id"], ) or now["status"] == "called", "nothing but the timer changed it"
    text = stack.station.scrape()
    assert 'vitalstream_station_oversight_total{outcome="refused_403"} 4.0' in text


def test_snooze_ends_by_itself_and_goal_shows_on_the_board(stack: Stack) -> None:
    alert = stack.raise_alert("p-three", "5")
    snoozed = stack.post("/api/snooze", {"alert_id": alert["alert_id"], "duration_s": 3,
                                         "reason": "patient in the shower"})
    assert snoozed.status_code == 202
    shown = stack.wait(lambda: (a := stack.alert_of("p-three")) and a["status"] == "snoozed" and a)
    assert shown["oversight"]["snooze"]["user_id"] == stack.user_id("ann")
    assert stack.alerts()[-1]["patient_id"] == "p-three", "a snoozed alert is last on the board"
    ended = stack.wait(lambda: (a := stack.alert_of("p-three")) and a["status"] in ("snooze_ended", "called") and a)
    assert ended["oversight"]["snooze"] is None
    goal = stack.post("/api/goal", {"ward": "4B", "bed": "5", "goal": "do_not_escalate", "duration_s": 3600,
                                    "reason": "agreed with the family"}, "lee")
    assert goal.status_code == 202
    goals = stack.wait(lambda: stack.snapshot()["goals"])
    assert [(g["bed"], g["payload"]["goal"]["goal"], g["payload"]["goal"]["user_id"]) for g in goals] == [
        ("5", "do_not_escalate", stack.user_id("lee"))]


def adt(trigger: str, patient_id: str, location: str) -> bytes:
    return (f"MSH|^~\\&|ADT|HOSP|VS|HOSP|20260315101500||ADT^{trigger}^ADT_{trigger}|c-{patient_id}-{trigger}|P|2.6\r"
            f"PID|||{patient_id}^^^HOSP^MR\rPV1||I|{location}").encode()


def mllp(settings: Settings, *messages: bytes) -> list[str]:
    """Send ADT messages through a real MLLP door with the census on; the MSA/ERR lines."""
    from vitalstream.gateway.census import CensusDoor
    from vitalstream.gateway.mllp import MllpServer
    from vitalstream.gateway.publish import RawPublisher
    from vitalstream.ingest.adt import KnownBeds

    async def run() -> list[str]:
        async with RawPublisher(settings) as publisher:
            door = CensusDoor(publisher, KnownBeds.parse('{"4B": "1-24", "5C": "1-24"}'))
            server = await MllpServer(publisher, port=0, census=door).start()
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            answers = []
            try:
                for message in messages:
                    writer.write(b"\x0b" + message + b"\x1c\r")
                    await writer.drain()
                    ack = await asyncio.wait_for(reader.readuntil(b"\x1c\r"), 20)
                    answers.append(" ".join(s for s in ack[1:-2].decode().split("\r") if s[:3] in ("MSA", "ERR")))
            finally:
                writer.close()
                await server.close()
            return answers
    return asyncio.run(run())


def test_adt_transfer_moves_the_open_alert_to_the_other_wards_board(stack: Stack) -> None:
    alert = stack.raise_alert("p-move", "6")
    [unknown, moved] = mllp(stack.settings, adt("A02", "p-move", "5C^^31"), adt("A02", "p-move", "5C^^2"))
    assert unknown.startswith("MSA|AE") and "ERR|||103" in unknown and "unknown_bed" in unknown
    assert moved.startswith("MSA|AA")
    there = stack.wait(lambda: stack.alert_of("p-move", "5C", TOKEN_5C))
    assert there["alert_id"] == alert["alert_id"] and there["bed"] == "2" and there["status"] == "transferred"
    assert there["oversight"]["history"][-1]["event"] == "transferred"
    stack.wait(lambda: stack.alert_of("p-move") is None)
    stack.wait(lambda: "6" not in {b["bed"] for b in stack.snapshot()["beds"]})
    # Readings the gateway still labels 4B/6 score the patient in the census's bed.
    send(stack.settings, stack.settings.topic_raw, *deteriorated("p-move", "4B", "6"), key=b"p-move")
    time.sleep(2.0)
    assert stack.alert_of("p-move") is None, "no alert to the ward the patient left"


def test_discharge_closes_the_alert_and_later_readings_are_quarantined(stack: Stack) -> None:
    stack.raise_alert("p-home", "7")
    [answer] = mllp(stack.settings, adt("A03", "p-home", ""))
    assert answer.startswith("MSA|AA")
    stack.wait(lambda: stack.alert_of("p-home") is None)
    assert not [b for b in stack.snapshot()["beds"] if b["patient_id"] == "p-home"], "the bed is free"
    send(stack.settings, stack.settings.topic_raw, *deteriorated("p-home", "4B", "7"), key=b"p-home")
    worker_metrics = httpx.get(f"http://127.0.0.1:{stack.worker.port}/metrics", timeout=5).text
    deadline = time.monotonic() + 20
    while "vitalstream_census_quarantined_total 0.0" in worker_metrics and time.monotonic() < deadline:
        time.sleep(0.5)
        worker_metrics = httpx.get(f"http://127.0.0.1:{stack.worker.port}/metrics", timeout=5).text
    assert "vitalstream_census_quarantined_total 21.0" in worker_metrics, "3 rounds of 7 readings, kept not scored"
    assert stack.alert_of("p-home") is None, "a discharged patient raises nothing"
