"""Running `vitalstream` as a user does, in a child process: its lines as they come, its
children (from /proc), a port nothing listens on. Imported by the tests of this folder."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

# Long enough for one connection attempt, short enough for quick tests.
QUICK_CONNECT = {"VITALSTREAM_KAFKA_CONNECT_TIMEOUT_S": "0.5"}
STATION_TOKENS = '{"a-long-station-token-4b": ["4B"]}'


def closed_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    # set for the whole test run (conftest.py)
    kept = ("VITALSTREAM_DATA_DIR", "VITALSTREAM_SIGNING_KEYS", "VITALSTREAM_TEST_MODEL_CACHE")
    for name in [n for n in env if n.startswith("VITALSTREAM_") and n not in kept]:
        del env[name]  # a developer's settings must not change what the test sees
    env.update({"VITALSTREAM_STATION_TOKENS": STATION_TOKENS, **QUICK_CONNECT, **extra})
    return env


def run(*argv: str, timeout_s: float = 60.0, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vitalstream", *argv], capture_output=True,
                          text=True, timeout=timeout_s, env=environment(**env))


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``, from the parent ids in /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for its parent."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class Running:
    """A `vitalstream` command in its own session (as a shell job), its output read as
    it comes."""

    def __init__(self, *argv: str, **env: str) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "vitalstream", *argv],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env=environment(**env), start_new_session=True)
        self.lines: queue.Queue[tuple[str, str]] = queue.Queue()
        self.seen: list[tuple[str, str]] = []
        for name, stream in (("out", self.process.stdout), ("err", self.process.stderr)):
            threading.Thread(target=self._read, args=(name, stream), daemon=True).start()

    def _read(self, name: str, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.put((name, line.rstrip("\n")))

    def wait_for(self, text: str, timeout_s: float = 90.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                name, line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append((name, line))
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} within {timeout_s} s; saw: {self.seen[-20:]}")

    def stop(self, signum: int, timeout_s: float = 30.0) -> int:
        self.process.send_signal(signum)
        status = self.process.wait(timeout=timeout_s)
        time.sleep(0.1)  # the reader threads take the last lines
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return status

    def output(self, name: str = "out") -> list[str]:
        return [line for stream, line in self.seen if stream == name]

    def kill(self) -> None:
        if self.process.poll() is None:
            for pid in descendants(self.process.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            self.process.kill()
            self.process.wait()
