"""vitalstream services in child processes: used by the demo, validation, benchmarks and
tests, so that each of them runs the real `vitalstream worker` or `vitalstream station`,
not an in-process copy."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar

from vitalstream.broker import free_port

T = TypeVar("T")


def stop_on_sigterm() -> None:
    """Make SIGTERM (what `kill`, `docker stop` and systemd send) stop this process as
    Ctrl-C does: KeyboardInterrupt in the main thread, so the ``finally`` blocks that stop
    its children (broker, worker) run. Python's default for SIGTERM is to die at once and
    leave them running. Called by `vitalstream.cli.main` for every command."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)


def run_until_stopped(main: Coroutine[Any, Any, T]) -> T | None:
    """``asyncio.run(main)`` for a service: SIGINT or SIGTERM cancels ``main``, whose
    ``finally`` blocks then close what it opened; returns None when it was stopped so."""
    stopped: list[int] = []
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}

    async def guarded() -> T | None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        assert task is not None
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, lambda s=signum: (stopped.append(s), task.cancel()))
        try:
            return await main
        except asyncio.CancelledError:
            if stopped:
                return None
            raise

    try:
        return asyncio.run(guarded())
    finally:  # asyncio leaves SIGTERM at its default (die at once) when it lets go of it
        for signum, handler in previous.items():
            if handler is not None:
                signal.signal(signum, handler)


class ServiceStartError(RuntimeError):
    """A service child that exited or was not ready in time; the message says which, with
    the last lines of its log (the log may be in a scratch folder that is about to go)."""


def _log_tail(path: Path | None, lines: int = 3) -> str:
    if path is None:
        return ""
    try:
        tail = [line for line in path.read_text(errors="replace").splitlines() if line.strip()][-lines:]
    except OSError:
        return ""
    return ("; its log ends: " + " | ".join(line.strip()[-200:] for line in tail)) if tail else ""


class ServiceProcess:
    """A `vitalstream` subcommand with an HTTP port serving /ready and /metrics.

    Subclasses name the subcommand and the environment that points it at its port."""

    name = "service"
    ready_timeout_s = 60.0

    def __init__(self, bootstrap: str, port: int = 0, env: dict[str, str] | None = None,
                 log_path: str | os.PathLike[str] | None = None, args: Sequence[str] = ()) -> None:
        self.bootstrap = bootstrap
        self.port = port or free_port()
        self.extra_env = env or {}
        self.log_path = Path(log_path) if log_path else None
        self.args = list(args)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "vitalstream", self.name, *self.args]

    def environment(self) -> dict[str, str]:
        from vitalstream.signing import run_keys

        env = dict(os.environ)
        # Each process signs with its own service's key unless told otherwise; all share
        # this run's keys (the environment's, else a set made once per run).
        env.pop("VITALSTREAM_SIGNING_KEY_ID", None)
        env["VITALSTREAM_SIGNING_KEYS"] = run_keys()
        env.update(self.extra_env)
        env["VITALSTREAM_KAFKA_BOOTSTRAP"] = self.bootstrap
        return env

    def start(self, ready_timeout_s: float | None = None) -> Self:
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(self.command(), env=self.environment(), stdout=out,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self.wait_ready(ready_timeout_s or self.ready_timeout_s)
        except BaseException:  # not ready, or interrupted meanwhile: nothing left running
            self.stop(timeout_s=5.0)
            raise
        return self

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ServiceStartError(f"{self.name} exited with status {self.process.returncode}"
                                        + _log_tail(self.log_path))
            try:
                with urllib.request.urlopen(f"{self.url}/ready", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise ServiceStartError(f"{self.name} not ready within {timeout_s:g} s" + _log_tail(self.log_path))

    def scrape(self) -> str:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as response:
            return response.read().decode()

    def metric(self, name: str) -> float:
        """Sum of all series of one metric (sample name as exposed, e.g. ..._total)."""
        from vitalstream.metrics import sum_from_exposition

        return sum_from_exposition(self.scrape(), name)

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class WorkerProcess(ServiceProcess):
    """`vitalstream worker` in a child process with its own web port.

        with WorkerProcess(bootstrap) as worker:
            worker.metric("vitalstream_samples_processed_total")
    """

    name = "worker"
    ready_timeout_s = 90.0

    def __init__(self, bootstrap: str, web_port: int = 0, env: dict[str, str] | None = None,
                 log_path: str | os.PathLike[str] | None = None, state_dir: str | None = None,
                 args: Sequence[str] = ()) -> None:
        # args: extra `vitalstream worker` flags, e.g. ["--loglevel", "info"]
        super().__init__(bootstrap, web_port, env, log_path, args)
        self.state_dir = state_dir

    @property
    def web_port(self) -> int:
        return self.port

    def environment(self) -> dict[str, str]:
        env = super().environment()
        env["VITALSTREAM_WORKER_WEB_PORT"] = str(self.port)
        if self.state_dir:
            env["VITALSTREAM_STATE_DIR"] = self.state_dir
        return env
