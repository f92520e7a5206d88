"""The ward board in a real browser (headless Debian chromium through Playwright), fed by
the real pipeline: gateway JSON -> worker -> alerts -> station service -> board."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest
from testkit import PASSWORD, make_users, missing
from ward_feed import readings

from vitalstream.broker import EmbeddedBroker
from vitalstream.delivery.process import StationProcess
from vitalstream.kafka import consumer, ensure_topics, producer
from vitalstream.process import WorkerProcess
from vitalstream.settings import Settings

pytestmark = [pytest.mark.broker, pytest.mark.browser]

TOKEN_4B = "board-test-token-ward-4B"
TOKEN_4C = "board-test-token-ward-4C"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
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
def pipeline(module_broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[tuple[Settings, StationProcess]]:
    settings = Settings(kafka_bootstrap=module_broker.bootstrap)
    asyncio.run(ensure_topics(settings))
    logs = tmp_path_factory.mktemp("board")
    tokens = {TOKEN_4B: {"station": "4B desk", "wards": ["4B"]},
              TOKEN_4C: {"station": "4C desk", "wards": ["4C"]}}
    make_users(logs / "users.json", ("anna", "Anna Smith", "bedside_nurse", ["4B"]))
    with WorkerProcess(module_broker.bootstrap, log_path=logs / "worker.log"), \
            StationProcess(module_broker.bootstrap, tokens, log_path=logs / "station.log",
                           users_file=logs / "users.json") as station:
        yield settings, station


async def send_hour(settings: Settings, end_ms: int) -> None:
    """An hour of minute reports: p-det (4B bed 12) and p-4c (4C bed 3) both deteriorate
    from NEWS2 0 to 11; p-calm (4B bed 11) stays at NEWS2 0."""
    out = producer(settings)
    await out.start()
    try:
        for minute in range(60):
            t_ms = end_ms - (59 - minute) * 60_000
            for patient_id, ward, bed in (("p-det", "4B", "12"), ("p-4c", "4C", "3")):
                await out.send(settings.topic_raw, orjson.dumps(readings(patient_id, ward, bed, minute, t_ms)))
            calm = [dict(r, value=v) for r, v in zip(readings("p-calm", "4B", "11", 0, t_ms),
                                                      (72, 15, 98, 124, 36.8, "A", False), strict=True)]
            await out.send(settings.topic_raw, orjson.dumps(calm))
        await out.flush()
    finally:
        await out.stop()


async def alerts_on_topic(settings: Settings) -> list:
    source = consumer(settings, settings.topic_alerts)
    await source.start()
    got: list = []
    try:
        while batch := await source.getmany(timeout_ms=1000):
            for records in batch.values():
                got.extend(records)
    finally:
        await source.stop()
    return sorted(got, key=lambda r: r.timestamp)


def off_loop(coroutine_function, *args):
    """Run Kafka clients in their own thread: Playwright's sync API holds this thread's loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(coroutine_function(*args))).result()


def sign_in(browser, url: str, token: str | None = None, username: str | None = None):
    """A nurse signs in as herself, or a wall board with its token."""
    page = browser.new_page(viewport={"width": 1600, "height": 900})
    page.goto(url)
    if username:
        page.fill("#username", username)
        page.fill("#password", PASSWORD)
        page.locator("#password").press("Enter")
    else:
        page.fill("#token", token)
        page.locator("#token").press("Enter")
    page.wait_for_selector('#connection[data-state="live"]', timeout=10_000)
    return page


def test_nurse_sees_her_ward_alert_live_acknowledges_it_and_never_sees_another_ward(
        chromium: str, pipeline: tuple[Settings, StationProcess], artifacts_dir: Path) -> None:
    from playwright.sync_api import sync_playwright

    settings, station = pipeline
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        try:
            board_4b = sign_in(browser, station.url, username="anna")
            board_4c = sign_in(browser, station.url, TOKEN_4C)
            # A wrong token stays on the sign-in page with a message.
            stranger = browser.new_page()
            stranger.goto(station.url)
            stranger.fill("#token", "not-a-token-of-this-hospital")
            stranger.locator("#token").press("Enter")
            stranger.wait_for_selector("#failed:not([hidden])", timeout=5000)
            assert "/board" not in stranger.url

            off_loop(send_hour, settings, int(time.time() * 1000))
            board_4b.wait_for_selector('#bed-4b-12 .alert', timeout=60_000)
            shown_s = time.time()
            records = off_loop(alerts_on_topic, settings)
            first_4b = next(r for r in records if r.key == b"4B")
            delay_s = shown_s - first_4b.timestamp / 1000
            assert delay_s <= 2.0, f"the alert took {delay_s:.2f} s from the alerts topic to the board"

            # The patient escalates to high; the tile shows it with its reasons, in red.
            board_4b.wait_for_selector("#bed-4b-12 .alert.prio-high", timeout=30_000)
            tile = board_4b.locator("#bed-4b-12")
            summary = tile.locator(".alert .summary").first.inner_text()
            assert "NEWS2" in summary and "Bed 12" in summary
            assert "rgb(229, 51, 42)" in tile.evaluate("n => getComputedStyle(n).borderColor")
            assert tile.locator(".news2 .total").inner_text().isdigit()
            assert board_4b.locator("#bed-4b-11").count() == 1, "a calm bed still has its tile"
            assert board_4b.locator("#bed-4b-11 .alert").count() == 0
            board_4b.screenshot(path=str(artifacts_dir / "station-board-4B.png"), full_page=True)

            # Acknowledge with the keyboard: "n" focuses the next unacknowledged alert.
            assert "Anna Smith" in board_4b.locator("#who").inner_text()
            board_4b.keyboard.press("n")
            focused = board_4b.evaluate("document.activeElement.dataset.alertId")
            assert focused and tile.locator(f'.alert[data-alert-id="{focused}"]').count() == 1
            board_4b.keyboard.press("Enter")
            board_4b.wait_for_selector(f'.alert[data-alert-id="{focused}"][data-status="acknowledged"]',
                                       timeout=15_000)
            assert "Acknowledged by Anna Smith" in tile.inner_text()
            assert tile.locator(f'.alert[data-alert-id="{focused}"] .summary').inner_text() == summary, \
                "the reasons for the alert stay on the tile after it is acknowledged"
            acked = [orjson.loads(r.value) for r in off_loop(alerts_on_topic, settings)]
            assert any(a["alert_id"] == focused and a["status"] == "acknowledged" for a in acked), \
                "the acknowledgement went through the monitor's alert policy"
            board_4b.screenshot(path=str(artifacts_dir / "station-board-4B-acknowledged.png"), full_page=True)

            # The 4C station saw its own patient, and nothing of ward 4B ever.
            board_4c.wait_for_selector("#bed-4c-3 .alert", timeout=10_000)
            # A wall board's token shows the ward and cannot acknowledge.
            assert "view only" in board_4c.locator("#who").inner_text()
            assert board_4c.locator("#bed-4c-3 button.ack:not(:disabled)").count() == 0
            text_4c = board_4c.locator("body").inner_text()
            assert "p-4c" in text_4c
            assert "p-det" not in text_4c and "p-calm" not in text_4c and "Ward 4B" not in text_4c
            assert board_4c.locator('[data-ward="4B"]').count() == 0
            board_4c.screenshot(path=str(artifacts_dir / "station-board-4C.png"), full_page=True)
        finally:
            browser.close()
