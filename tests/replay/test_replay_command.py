"""`vitalstream replay` usage errors: one readable line on stderr, exit status 2."""

from __future__ import annotations

import pytest

from vitalstream.cli import main


def test_without_broker_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("VITALSTREAM_KAFKA_BOOTSTRAP", raising=False)
    assert main(["replay", "sim:smoke"]) == 2
    err = capsys.readouterr().err
    assert "vitalstream broker" in err and err.count("\n") == 1


@pytest.mark.parametrize(("argv", "says"), [
    (["replay", "sim:nope"], "unknown scenario 'nope'"),
    (["replay", "/no/such/physionet2019"], "physionet.org"),
    (["replay", "sim:smoke", "--speed", "0"], "--speed must be positive"),
    (["replay"], "give a SOURCE"),
])
def test_bad_sources_and_flags_are_one_line(argv: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--bootstrap", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1
