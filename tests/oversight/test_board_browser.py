"""The ward board in Chromium at 1920x1080 (Playwright, Debian chromium), fed by the real
pipeline: a 24-bed ward fits the screen, the unacknowledged alert of bed 22 is first in the
attention strip, it goes to the charge nurse at the configured time, she accepts and answers
"physician informed" on the board, and the alert's history names each step."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest
from oversightkit import ENV, deteriorated, publish
from testkit import missing

from vitalstream.broker import EmbeddedBroker
from vitalstream.delivery.process import StationProcess
from vitalstream.kafka import ensure_topics
from vitalstream.process import WorkerProcess
from vitalstream.settings import Settings

pytestmark = [pytest.mark.broker, pytest.mark.browser, pytest.mark.oversight]

TOKEN = "board-oversight-token-ward-4B"
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
         ) -> Iterator[tuple[Settings, StationProcess]]:
    settings = Settings(kafka_bootstrap=module_broker.bootstrap)
    asyncio.run(ensure_topics(settings))
    logs = tmp_path_factory.mktemp("board-oversight")
    with WorkerProcess(module_broker.bootstrap, env=ENV, log_path=logs / "worker.log"), \
            StationProcess(module_broker.bootstrap, {TOKEN: {"station": "4B desk", "wards": ["4B"]}},
                           env=ENV, log_path=logs / "station.log") as station:
        yield settings, station


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


def test_24_beds_fit_the_screen_and_the_charge_nurse_answers_the_escalated_alert(
        chromium: str, ward: tuple[Settings, StationProcess], artifacts_dir: Path) -> None:
    from playwright.sync_api import sync_playwright

    settings, station = ward
    feed(settings)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1920, "height": 1080})
            page.goto(station.url)
            page.fill("#token", TOKEN)
            page.keyboard.press("Enter")
            page.wait_for_selector('#connection[data-state="live"]', timeout=10_000)
            page.wait_for_function("document.querySelectorAll('.tile').length === 24", timeout=90_000)
            page.wait_for_function("document.querySelectorAll('.attention-item').length === 2", timeout=60_000)
            first = page.locator('.attention-item[data-bed="22"]')
            assert page.locator(".attention-item").first.get_attribute("data-bed") in ("5", "22"), \
                "the unacknowledged high alerts come first"
            page.wait_for_selector('.attention-item[data-bed="22"] .holder[data-holder="charge_nurse"]',
                                   timeout=30_000)
            assert "charge nurse since" in first.locator(".holder").inner_text()

            page.screenshot(path=str(artifacts_dir / "station-board-24-beds.png"))
            # Everything on one 1920x1080 screen, legible from across the room.
            boxes = page.evaluate("""[...document.querySelectorAll('.tile, .attention-item')].map(n => {
                const r = n.getBoundingClientRect(); return [r.right, r.bottom]; })""")
            assert max(right for right, _ in boxes) <= 1920 and max(bottom for _, bottom in boxes) <= 1080, \
                f"below or beside the screen: {max(boxes, key=lambda b: b[1])}"
            assert page.evaluate("document.documentElement.scrollHeight") <= 1080
            sizes = page.evaluate("""['.news2 .total', '.vitals .value', '.tile h2', '.attention-item .where']
                .map(s => parseFloat(getComputedStyle(document.querySelector(s)).fontSize))""")
            assert sizes[0] >= 32 and sizes[1] >= 16 and sizes[2] >= 20 and sizes[3] >= 18, sizes

            # The charge nurse accepts on the board, then answers "physician informed".
            page.fill("#nurse", "Cat Moss")
            page.select_option("#role", "charge_nurse")
            first.locator("button.ack").click()
            page.wait_for_selector('.attention-item[data-bed="22"].waiting-answer', timeout=15_000)
            item = page.locator('.attention-item[data-bed="22"]')
            item.locator("select.reason").select_option("physician_informed")
            item.locator("button.answer").click()
            page.wait_for_selector('.attention-item[data-bed="22"]', state="detached", timeout=15_000)
            tile = page.locator("#bed-4b-22")
            assert "answered: physician informed by Cat Moss" in tile.locator(".oversight .held").inner_text()
            tile.locator(".history summary").click()
            history = tile.locator(".history li").all_inner_texts()
            assert [line.split(" ", 2)[1] for line in history] == ["raised", "called", "acknowledged", "answered"]
            assert "charge nurse" in history[1] and "no acknowledgement" in history[1]
            assert "u-cat-moss" in history[2] and "u-cat-moss" in history[3]
            assert all(line[:5].replace(":", "").isdigit() for line in history), "each step has its time"
            page.screenshot(path=str(artifacts_dir / "station-board-answered.png"))

            # Bed 5: snoozed from the strip, back by itself when the snooze ends (4 s for high here).
            page.locator('.attention-item[data-bed="5"] button.snooze').click()
            page.wait_for_selector('.attention-item[data-bed="5"]', state="detached", timeout=15_000)
            assert "snoozed until" in page.locator("#bed-4b-5 .oversight .held").inner_text()
            page.wait_for_selector('.attention-item[data-bed="5"]', timeout=20_000)
            # Discharged (ADT A03): the alert closes and the bed is free on the board.
            discharge = orjson.dumps({"event": "discharge", "patient_id": "p-5", "ward": "", "bed": "",
                                      "at_ms": int(time.time() * 1000), "source": "hl7", "message_id": "m-5"})
            with ThreadPoolExecutor(1) as pool:  # (Playwright's sync API holds this thread's loop)
                pool.submit(lambda: asyncio.run(publish(settings, settings.topic_census, [discharge], b"p-5"))).result()
            page.wait_for_selector('.attention-item[data-bed="5"]', state="detached", timeout=20_000)
            page.wait_for_selector("#bed-4b-5", state="detached", timeout=20_000)
        finally:
            browser.close()
