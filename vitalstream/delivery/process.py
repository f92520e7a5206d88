"""The station service in a child process, like ``WorkerProcess`` for the worker: the
tests, the benchmark and the demo run the real `vitalstream station` command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson

from vitalstream.broker import free_port


class StationProcess:
    """`vitalstream station` with the given stations ({token: wards}) on a free port.

        with StationProcess(bootstrap, {"a-long-station-token": ["4B"]}) as station:
            station.url   # http://127.0.0.1:PORT
    """

    def __init__(self, bootstrap: str, tokens: dict[str, object], port: int = 0,
                 env: dict[str, str] | None = None, log_path: str | os.PathLike[str] | None = None,
                 export: bool = False) -> None:
        self.bootstrap = bootstrap
        self.tokens = tokens
        self.port = port or free_port()
        self.extra_env = env or {}
        self.log_path = Path(log_path) if log_path else None
        self.export = export
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_timeout_s: float = 60.0) -> StationProcess:
        env = dict(os.environ)
        env.update(self.extra_env)
        env["VITALSTREAM_KAFKA_BOOTSTRAP"] = self.bootstrap
        env["VITALSTREAM_STATION_TOKENS"] = orjson.dumps(self.tokens).decode()
        env["VITALSTREAM_STATION_PORT"] = str(self.port)
        env.pop("VITALSTREAM_STATION_TOKENS_FILE", None)
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        command = [sys.executable, "-m", "vitalstream", "station"] + (["--export"] if self.export else [])
        self.process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        self.wait_ready(ready_timeout_s)
        return self

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"station service exited with status {self.process.returncode}"
                                   + (f"; log: {self.log_path}" if self.log_path else ""))
            try:
                with urllib.request.urlopen(f"{self.url}/ready", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"station service not ready within {timeout_s}s")

    def scrape(self) -> str:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as response:
            return response.read().decode()

    def metric(self, name: str) -> float:
        from vitalstream.metrics import sum_from_exposition

        return sum_from_exposition(self.scrape(), name)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def __enter__(self) -> StationProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
