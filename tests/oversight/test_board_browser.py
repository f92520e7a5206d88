"""Issue 18's "done when", in Chromium (Playwright, Debian chromium) on the real pipeline
(broker, worker, station): two bedside nurses and the charge nurse of ward 4B sign in as
themselves, each in her own browser; the unacknowledged alert of bed 22 is first in the
attention strip and goes to the charge nurse at the configured time (3 s here); she accepts
and answers "physician informed"; the alert's history names each step with user ids and
times; a nurse of another ward neither sees it nor can act on it; a snooze ends by itself;
a discharged patient's alert closes. A 24-bed ward fits 1920x1080, and a wall board (the
station token) shows the strip with every button grey."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest
from oversightkit import ENV, deteriorated, publish
from testkit import PASSWORD, make_users, missing

from vitalstream.broker import EmbeddedBroker
from vitalstream.delivery.process import StationProcess
from vitalstream.kafka import ensure_topics
from vitalstream.process import WorkerProcess
from vitalstream.settings import Settings

pytestmark = [pytest.mark.broker, pytest.mark.browser, pytest.mark.oversight]

TOKEN = "board-oversight-token-ward-4B"
USERS = [("ann", "Ann Bell", "bedside_nurse", ["4B"]), ("ben", "Ben Ode", "bedside_nurse", ["4B"]),
         ("cat", "Cat Moss", "charge_nurse", ["4B"]), ("fred", "Fred Far", "bedside_nurse", ["5C"])]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        missing("Debian chromium is not installed (make system-deps installs it)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing("playwright for Python is not installed")
    return str(path)


@pytest.fixture(scope="module")
def ward(module_broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[tuple[Settings, StationProcess, Any]]:
    settings = Settings(kafka_bootstrap=module_broker.bootstrap)
    asyncio.run(ensure_topics(settings))
    logs = tmp_path_factory.mktemp("board-oversight")
    store = make_users(logs / "users.json", *USERS)
    with WorkerProcess(module_broker.bootstrap, env=ENV, log_path=logs / "worker.log"), \
            StationProcess(module_broker.bootstrap, {TOKEN: {"station": "4B desk", "wards": ["4B"]}},
                           env=ENV, log_path=logs / "station.log", users_file=logs / "users.json") as station:
        yield settings, station, store


def calm(patient_id: str, bed: str, t_ms: int) -> bytes:
    return orjson.dumps([{"patient_id": patient_id, "ward": "4B", "bed": bed, "parameter": name, "value": value,
                          "device_time_ms": t_ms, "source": "obs-round"}
                         for name, value in (("resp_rate", 15), ("spo2", 98), ("systolic_bp", 124),
                                             ("heart_rate", 72), ("temperature", 36.8),
                                             ("consciousness", "A"), ("on_oxygen", False))])


def feed(settings: Settings) -> None:
    now = int(time.time() * 1000)
    values = [calm(f"p-{bed}", str(bed), now) for bed in range(1, 25) if bed not in (5, 22)]
    values += deteriorated("p-22", "4B", "22", now)
    values += deteriorated("p-5", "4B", "5", now)
    asyncio.run(publish(settings, settings.topic_raw, values))


def off_loop(function: Any, *args: Any) -> Any:
    """Run Kafka clients in their own thread: Playwright's sync API holds this thread's loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(function, *args).result()


def open_board(browser: Any, url: str, username: str | None = None, wide: bool = False) -> Any:
    """A page in its own browser context (its own cookie): a user signed in as herself, or
    (no user name) a wall board with the station token."""
    viewport = {"width": 1920, "height": 1080} if wide else {"width": 1280, "height": 800}
    page = browser.new_context(viewport=viewport).new_page()
    page.goto(url)
    if username:
        page.fill("#username", username)
        page.fill("#password", PASSWORD)
        page.locator("#password").press("Enter")
    else:
        page.fill("#token", TOKEN)
        page.locator("#token").press("Enter")
    page.wait_for_selector('#connection[data-state="live"]', timeout=15_000)
    return page



def origin(page) -> str:  # type: ignore[no-untyped-def]
    """The station's scheme://host:port, from the page's address (page.request needs it)."""
    from urllib.parse import urlsplit

    parts = urlsplit(page.url)
    return f"{parts.scheme}://{parts.netloc}"

def api_alert(page: Any, bed: str) -> dict[str, Any] | None:
    """The open alert of a 4B bed as the page's signed-in user gets it from the API."""
    alerts = page.request.get(origin(page) + "/api/state?ward=4B").json()["wards"]["4B"]["alerts"]
    return next((a for a in alerts if str(a["bed"]) == bed), None)


def test_nurses_and_charge_nurse_sign_in_escalate_answer_snooze_and_discharge(
        chromium: str, ward: tuple[Settings, StationProcess, Any], artifacts_dir: Path) -> None:
    from playwright.sync_api import sync_playwright

    settings, station, store = ward
    cat_id = store.get("cat").user_id
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=FLAGS)
        try:
            cat = open_board(browser, station.url, "cat", wide=True)
            ann = open_board(browser, station.url, "ann")
            ben = open_board(browser, station.url, "ben")
            fred = open_board(browser, station.url, "fred")
            wall = open_board(browser, station.url)
            assert cat.locator("#who").inner_text() == "Signed in: Cat Moss (charge nurse)"
            assert "Ann Bell" in ann.locator("#who").inner_text() and "Ben Ode" in ben.locator("#who").inner_text()
            assert "view only" in wall.locator("#who").inner_text()
            off_loop(feed, settings)
            # (the board's CSP forbids eval, so no wait_for_function: selectors only)
            cat.wait_for_selector(".tile:nth-of-type(24)", timeout=90_000)
            cat.wait_for_selector(".attention-item:nth-of-type(2)", timeout=60_000)
            assert cat.locator(".tile").count() == 24 and cat.locator(".attention-item").count() == 2
            assert cat.locator(".attention-item").first.get_attribute("data-bed") in ("5", "22"), \
                "the unacknowledged high alerts come first"
            for nurse in (ann, ben):  # both bedside nurses have it, neither acknowledges
                nurse.wait_for_selector('.attention-item[data-bed="22"]', timeout=15_000)

            # Nobody acknowledges: the charge nurse is called at the configured time (3 s).
            first = cat.locator('.attention-item[data-bed="22"]')
            cat.wait_for_selector('.attention-item[data-bed="22"] .holder[data-holder="charge_nurse"]',
                                  timeout=30_000)
            assert "charge nurse since" in first.locator(".holder").inner_text()
            called = api_alert(cat, "22")
            assert called is not None and called["status"] == "called"
            held_s = (called["oversight"]["held_since_ms"] - called["oversight"]["opened_ms"]) / 1000
            assert 3.0 <= held_s < 8.0, f"called after {held_s} s; configured 3 s"
            alert_id = called["alert_id"]

            # A 24-bed ward on one 1920x1080 screen, legible from across the room.
            cat.screenshot(path=str(artifacts_dir / "station-board-24-beds.png"))
            boxes = cat.evaluate("""[...document.querySelectorAll('.tile, .attention-item')].map(n => {
                const r = n.getBoundingClientRect(); return [r.right, r.bottom]; })""")
            assert max(right for right, _ in boxes) <= 1920 and max(bottom for _, bottom in boxes) <= 1080, \
                f"below or beside the screen: {max(boxes, key=lambda b: b[1])}"
            assert cat.evaluate("document.documentElement.scrollHeight") <= 1080
            sizes = cat.evaluate("""['.news2 .total', '.vitals .value', '.tile h2', '.attention-item .where']
                .map(s => parseFloat(getComputedStyle(document.querySelector(s)).fontSize))""")
            assert sizes[0] >= 32 and sizes[1] >= 16 and sizes[2] >= 20 and sizes[3] >= 18, sizes

            # The wall board shows the strip, and every action in it is grey.
            wall.wait_for_selector('.attention-item[data-bed="22"]', timeout=15_000)
            controls = wall.locator(".attention-item button, .attention-item select, .attention-item input")
            assert controls.count() >= 6 and all(
                controls.nth(k).is_disabled() for k in range(controls.count())), "a wall board acts on nothing"
            wall.screenshot(path=str(artifacts_dir / "station-board-wall-view-only.png"))

            # A nurse of another ward: not on her board, and the API neither shows nor takes it.
            assert fred.locator(".attention-item").count() == 0 and fred.locator("#bed-4b-22").count() == 0
            assert fred.request.get(origin(fred) + "/api/state?ward=4B").status == 403
            assert alert_id not in fred.request.get(origin(fred) + "/api/state").text()
            for path, body in (("/api/ack", {"alert_id": alert_id}),
                               ("/api/answer", {"alert_id": alert_id, "reason": "physician_informed"}),
                               ("/api/snooze", {"alert_id": alert_id, "duration_s": "max", "reason": "x"})):
                assert fred.request.post(origin(fred) + path, data=body).status == 404, path

            # The charge nurse accepts on her board, then answers "physician informed".
            first.locator("button.ack").click()
            cat.wait_for_selector('.attention-item[data-bed="22"].waiting-answer', timeout=15_000)
            item = cat.locator('.attention-item[data-bed="22"]')
            item.locator("select.reason").select_option("physician_informed")
            item.locator("button.answer").click()
            cat.wait_for_selector('.attention-item[data-bed="22"]', state="detached", timeout=15_000)
            ann.wait_for_selector('.attention-item[data-bed="22"]', state="detached", timeout=15_000)
            tile = cat.locator("#bed-4b-22")
            assert "answered: physician informed by Cat Moss" in tile.locator(".oversight .held").inner_text()
            tile.locator(".history summary").click()
            history = tile.locator(".history li").all_inner_texts()
            assert [line.split(" ", 2)[1] for line in history] == ["raised", "called", "acknowledged", "answered"]
            assert "charge nurse" in history[1] and "no acknowledgement" in history[1]
            assert cat_id in history[2] and cat_id in history[3] and "physician informed" in history[3]
            assert all(line[:5].replace(":", "").isdigit() for line in history), "each step has its time"
            answered = api_alert(cat, "22")
            steps = answered["oversight"]["history"]
            assert [(h["event"], h.get("role") or h.get("user_id")) for h in steps] == [
                ("raised", "bedside_nurse"), ("called", "charge_nurse"), ("acknowledged", cat_id),
                ("answered", cat_id)]
            times = [h["at_ms"] for h in steps]
            assert times == sorted(times) and times[1] - times[0] >= 3000
            cat.screenshot(path=str(artifacts_dir / "station-board-answered.png"))

            # Bed 5: a bedside nurse snoozes it from her strip (4 s for a high alert here); it
            # leaves every board's strip and comes back by itself when the snooze ends.
            ann.locator('.attention-item[data-bed="5"] button.snooze').click()
            cat.wait_for_selector('.attention-item[data-bed="5"]', state="detached", timeout=15_000)
            assert "snoozed until" in cat.locator("#bed-4b-5 .oversight .held").inner_text()
            assert api_alert(cat, "5")["oversight"]["snooze"]["user_id"] == store.get("ann").user_id
            cat.wait_for_selector('.attention-item[data-bed="5"]', timeout=20_000)
            assert api_alert(cat, "5")["oversight"]["snooze"] is None

            # Discharged (a census record as the ADT door signs it): the alert closes and
            # the emptied bed leaves every board.
            discharge = orjson.dumps({"event": "discharge", "patient_id": "p-5", "ward": "", "bed": "",
                                      "at_ms": int(time.time() * 1000), "source": "hl7", "message_id": "m-5"})
            off_loop(lambda: asyncio.run(publish(settings, settings.topic_census, [discharge], b"p-5")))
            for page in (cat, ben):
                page.wait_for_selector('.attention-item[data-bed="5"]', state="detached", timeout=20_000)
                page.wait_for_selector("#bed-4b-5", state="detached", timeout=20_000)
            assert api_alert(cat, "5") is None
        finally:
            browser.close()
