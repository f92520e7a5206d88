"""Every command that needs a broker says in one line that it cannot reach one, and exits
2, after a short quiet retry: no aiokafka connection spam, no traceback. Arguments,
files and ports are checked before the broker is contacted, so those errors come first."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator

import pytest
from clikit import closed_port, environment, run

from vitalstream.cli import main


@pytest.fixture(autouse=True)
def keep_sigterm():
    """`main` makes SIGTERM stop a command as Ctrl-C does; pytest keeps its own."""
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)

# Each command with the least it needs to get as far as the broker.
NEEDS_BROKER = {
    "worker": ["worker", "--web-port", "{free}"],
    "gateway mllp": ["gateway", "mllp", "--port", "0"],
    "gateway fhir": ["gateway", "fhir", "--port", "0"],
    "station": ["station", "--port", "0"],
    "demo": ["demo", "--patients", "2", "--hours", "0.1"],
    "subscribe": ["subscribe", "--ward", "4B"],
    "replay": ["replay", "sim:ward", "--max-speed", "--quiet"],
    "validate": ["validate", "--scenario", "ward", "--quiet"],
}


def assert_one_line(result, pattern: str) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr and "Unable connect" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    assert re.fullmatch(pattern, lines[0]), lines[0]
    assert result.returncode == 2
    return lines[0]


@pytest.mark.parametrize("command", NEEDS_BROKER)
def test_no_broker_is_one_line_and_exit_2(command, tmp_path):
    port = closed_port()
    argv = [a.format(free=closed_port()) for a in NEEDS_BROKER[command]] + ["--bootstrap", f"127.0.0.1:{port}"]
    if command == "validate":
        argv += ["--out", str(tmp_path / "report")]
    result = run(*argv)
    name = command.split()[0]
    assert_one_line(result, rf"vitalstream {name}: cannot reach the broker at 127\.0\.0\.1:{port} "
                            r"\(connection refused\); is it running\? see `vitalstream broker`")
    assert result.stdout == ""


def test_unknown_host_is_named(tmp_path):
    result = run("subscribe", "--ward", "4B", "--bootstrap", "no-such-broker.invalid:9092")
    assert_one_line(result, r"vitalstream subscribe: cannot reach the broker at "
                            r"no-such-broker\.invalid:9092 \(unknown host no-such-broker\.invalid\); .*")


@pytest.fixture
def not_kafka() -> Iterator[int]:
    """A port that accepts connections and closes them at once: something, not Kafka."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def test_a_port_that_is_not_kafka_says_so(not_kafka):
    result = run("replay", "sim:ward", "--quiet", "--bootstrap", f"127.0.0.1:{not_kafka}")
    assert_one_line(result, rf"vitalstream replay: cannot reach the broker at 127\.0\.0\.1:{not_kafka} "
                            r"\(a port is open but no Kafka broker answered \(\w+\)\); .*")


# A wrong argument or file is reported as itself, not as the unreachable broker behind it.
ARGUMENTS_FIRST = {
    "replay, missing file": (["replay", "/no/such/recording.ndjson"], r"vitalstream replay: no such file or folder: /no/such/recording\.ndjson"),
    "validate, missing source": (["validate", "--source", "/no/such/dir", "--out", "OUT"], r"vitalstream validate: no such file or folder: /no/such/dir"),
    "station, missing tokens file": (["station", "--tokens-file", "/no/such/tokens.json"], r"vitalstream station: no such tokens file: /no/such/tokens\.json"),
    "gateway, bad port": (["gateway", "mllp", "--port", "70000"], r"vitalstream gateway: port 70000 is not 0-65535"),
    "demo, bad patients": (["demo", "--patients", "0"], r"vitalstream demo: --patients must be between 1 and 5000"),
    "subscribe, bad max": (["subscribe", "--ward", "4B", "--max-alerts", "-1"], r"vitalstream subscribe: --max-alerts must be >= 0"),
}


def in_process(argv: list[str], capsys, monkeypatch) -> subprocess.CompletedProcess[str]:
    """`main(argv)` here (no interpreter start), with the environment the children get."""
    for name, value in environment().items():
        monkeypatch.setenv(name, value)
    status = main(argv)
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(argv, status, captured.out, captured.err)


@pytest.mark.parametrize("case", ARGUMENTS_FIRST)
def test_arguments_and_files_are_checked_before_the_broker(case, tmp_path, capsys, monkeypatch):
    argv, pattern = ARGUMENTS_FIRST[case]
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in argv]
    result = in_process([*argv, "--bootstrap", f"127.0.0.1:{closed_port()}"], capsys, monkeypatch)
    assert_one_line(result, pattern)


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


TAKES_A_PORT = {
    "broker": ["broker", "--port", "{port}"],
    "worker": ["worker", "--web-port", "{port}"],
    "gateway mllp": ["gateway", "mllp", "--port", "{port}"],
    "gateway mllp metrics": ["gateway", "mllp", "--port", "0", "--metrics-port", "{port}"],
    "gateway fhir": ["gateway", "fhir", "--port", "{port}"],
    "station": ["station", "--port", "{port}"],
}


@pytest.mark.parametrize("command", TAKES_A_PORT)
def test_a_taken_port_is_one_line_and_exit_2_before_the_broker(command, taken_port, capsys, monkeypatch):
    argv = [a.format(port=taken_port) for a in TAKES_A_PORT[command]]
    if command != "broker":
        argv += ["--bootstrap", f"127.0.0.1:{closed_port()}"]
    name = command.split()[0]
    line = assert_one_line(in_process(argv, capsys, monkeypatch), rf"vitalstream {name}: .*port {taken_port} on 127\.0\.0\.1 "
                                       r"is already in use \(another process listens there\).*")
    assert "broker listening" not in line


def test_a_missing_model_file_is_named_before_the_broker(capsys, monkeypatch):
    monkeypatch.setenv("VITALSTREAM_MODEL_PATH", "/no/such/model.skops")
    result = in_process(["worker", "--web-port", "0", "--bootstrap", f"127.0.0.1:{closed_port()}"],
                        capsys, monkeypatch)
    assert_one_line(result, r"vitalstream worker: no risk model file at /no/such/model\.skops .*")


def test_demo_whose_broker_cannot_start_says_why(capsys, monkeypatch):
    monkeypatch.setenv("VITALSTREAM_TANSU", "/no/such/tansu")
    result = in_process(["demo", "--patients", "2", "--hours", "0.1"], capsys, monkeypatch)
    assert_one_line(result, r"vitalstream demo: cannot run /no/such/tansu: No such file or directory")
