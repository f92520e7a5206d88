"""The kill switch thrown by an administrator in a real browser (headless Debian chromium
through Playwright): the worker applies it within a second, the next alerts of that ward
come from NEWS2 only and say so, another ward is untouched, the board shows the mode,
and the action is in the audit trail with the admin's name."""

from __future__ import annotations

import asyncio
import shutil
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pytest
from governance.govkit import KEYRING, KEYS_JSON, collect, deteriorating, send, values, worker_env
from testkit import missing

from vitalstream.broker import EmbeddedBroker
from vitalstream.delivery.process import StationProcess
from vitalstream.governance import audit
from vitalstream.kafka import ensure_topics
from vitalstream.process import WorkerProcess
from vitalstream.settings import Settings

pytestmark = [pytest.mark.governance, pytest.mark.broker, pytest.mark.browser]

STATION_TOKEN = "kill-switch-test-station-4B"
ADMIN_TOKEN = "kill-switch-test-admin-token"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


def off_loop(coroutine):
    """Kafka clients in their own thread: Playwright's sync API holds this thread's loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def health(worker: WorkerProcess) -> dict:
    with urllib.request.urlopen(f"{worker.url}/health", timeout=2) as response:
        return orjson.loads(response.read())


def first_alert(settings: Settings, patient_id: str) -> dict:
    records = off_loop(collect(settings, settings.topic_alerts,
                               lambda got: any(a["patient_id"] == patient_id for a in values(got)), 60))
    return next(a for a in values(records) if a["patient_id"] == patient_id)


@pytest.mark.timeout(240)
def test_admin_throws_the_kill_switch_in_the_browser_and_the_next_alerts_are_news2_only(
        broker: EmbeddedBroker, tmp_path: Path, artifacts_dir: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        missing("Debian chromium is not installed (make system-deps installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright for Python is not installed")
    settings = Settings(kafka_bootstrap=broker.bootstrap)
    off_loop(ensure_topics(settings))
    station_env = {"VITALSTREAM_SIGNING_KEYS": KEYS_JSON, "VITALSTREAM_SIGNING_KEY_ID": "station-1",
                   "VITALSTREAM_ADMIN_TOKENS": orjson.dumps(
                       {ADMIN_TOKEN: {"user_id": "u-admin-1", "name": "Ada Admin"}}).decode()}
    with WorkerProcess(broker.bootstrap, env=worker_env(), log_path=tmp_path / "worker.log") as worker, \
            StationProcess(broker.bootstrap, {STATION_TOKEN: {"station": "4B desk", "wards": ["4B"]}},
                           env=station_env, log_path=tmp_path / "station.log") as station:
        assert health(worker)["mode"]["default"] == "normal"
        # Refused where they enter, each counted: unsigned, signed by a station's key,
        # and signed by an admin key for an actor who is not an admin.
        forged = {"kill_switch": {"mode": "news2_only", "scope": "*", "reason": "", "at_ms": 1,
                                  "actor": {"user_id": "u-x", "role": "admin", "name": "X"}}}
        nurse = {"kill_switch": {**forged["kill_switch"],
                                 "actor": {"user_id": "u-n", "role": "charge_nurse", "name": "N"}}}
        topic = settings.topic_control
        off_loop(send(settings, topic, [(b"*", orjson.dumps(forged))]))
        off_loop(send(settings, topic, [(b"*", orjson.dumps(forged))], signer=KEYRING.for_service("station")))
        off_loop(send(settings, topic, [(b"*", orjson.dumps(nurse))], signer=KEYRING.for_service("admin")))
        end_ms = int(time.time() * 1000)
        off_loop(send(settings, settings.topic_raw, [(b"p-a", m) for m in deteriorating("p-a", "4B", "1", end_ms)]))
        before = first_alert(settings, "p-a")
        assert before["payload"]["mode"] == "normal" and before["payload"]["risk"] is not None

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
            try:
                board = browser.new_page()
                board.goto(station.url)
                board.fill("#token", STATION_TOKEN)
                board.keyboard.press("Enter")
                board.wait_for_selector('#mode[data-mode="normal"]:has-text("risk model")', timeout=10_000)

                admin = browser.new_page()
                admin.goto(f"{station.url}/admin")
                admin.fill("#admin-token", ADMIN_TOKEN)
                admin.keyboard.press("Enter")
                admin.wait_for_selector("#killswitch", timeout=10_000)
                admin.select_option("#ks-mode", "news2_only")
                admin.fill("#ks-scope", "4B")
                admin.fill("#ks-reason", "alert rate doubled overnight")
                thrown_s = time.monotonic()
                admin.click("#ks-apply")
                admin.wait_for_selector('#ks-result[data-state="sent"]', timeout=5_000)
                while health(worker)["mode"]["wards"].get("4B") != "news2_only":
                    assert time.monotonic() - thrown_s < 5, "the worker never applied the kill switch"
                    time.sleep(0.02)
                applied_s = time.monotonic() - thrown_s
                assert applied_s <= 1.0, f"the worker applied the kill switch after {applied_s:.2f} s"
                scrape = worker.scrape()
                for reason in ("unsigned", "wrong_service", "malformed"):
                    assert f'vitalstream_kill_switch_refused_total{{reason="{reason}"}} 1.0' in scrape, reason
                assert health(worker)["mode"]["default"] == "normal", "no refused instruction took effect"
                board.wait_for_selector('#mode[data-mode="news2_only"]', timeout=5_000)
                assert "NEWS2 only" in board.inner_text("#mode")
                admin.wait_for_selector('#ks-modes:has-text("4B: news2_only")', timeout=5_000)
                board.screenshot(path=str(artifacts_dir / "killswitch-board-4B.png"))
                admin.screenshot(path=str(artifacts_dir / "killswitch-admin.png"))
            finally:
                browser.close()

        # The next alerts: ward 4B from NEWS2 alone and saying so; ward 4C as before.
        end_ms = int(time.time() * 1000)
        off_loop(send(settings, settings.topic_raw, [(b"p-b", m) for m in deteriorating("p-b", "4B", "2", end_ms)]
                      + [(b"p-c", m) for m in deteriorating("p-c", "4C", "3", end_ms)]))
        after = first_alert(settings, "p-b")
        assert after["payload"]["mode"] == "news2_only"
        assert after["payload"]["risk"] is None, "the risk model is off on ward 4B"
        other = first_alert(settings, "p-c")
        assert other["payload"]["mode"] == "normal" and other["payload"]["risk"] is not None

        records = off_loop(audit.read_topic(settings, settings.topic_audit))
        signed_in = [r for r in records if r["event"] == "sign_in"]
        assert [r["actor"]["user_id"] for r in signed_in] == ["u-admin-1"], "the admin's sign-in is audited"
        thrown = [r for r in records if r["event"] == "kill_switch"]
        assert len(thrown) == 1
        assert thrown[0]["actor"] == {"user_id": "u-admin-1", "role": "admin", "name": "Ada Admin"}
        assert thrown[0]["detail"]["mode"] == "news2_only" and thrown[0]["detail"]["scope"] == "4B"
        assert thrown[0]["detail"]["reason"] == "alert rate doubled overnight"
        decided = next(r for r in records if r["type"] == "decision" and r["alert_id"] == after["alert_id"])
        assert decided["mode"] == "news2_only"
        assert audit.verify(records).ok
