"""`vitalstream config`: the configuration reference is generated from `Settings`, so the
one in deploy/ must be what the code would generate today, and secrets never print."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vitalstream.cli import main
from vitalstream.commands.config import OTHER_VARIABLES, env_name, reference_markdown
from vitalstream.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CONFIG_MD = ROOT / "deploy" / "CONFIG.md"


def test_deploy_config_reference_is_what_settings_generate_today(capsys) -> None:
    # A setting added, renamed or re-described without regenerating the reference fails here.
    assert main(["config", "--check", str(CONFIG_MD)]) == 0, capsys.readouterr().err


def test_check_reports_a_stale_reference_and_how_to_regenerate_it(tmp_path, capsys) -> None:
    stale = tmp_path / "CONFIG.md"
    stale.write_text(reference_markdown().replace("VITALSTREAM_BATCH_SIZE", "VITALSTREAM_BATCH"))
    assert main(["config", "--check", str(stale)]) == 1
    assert "vitalstream config --markdown" in capsys.readouterr().err


def test_reference_lists_every_setting_with_its_default_and_description() -> None:
    reference = reference_markdown()
    for name, field in Settings.model_fields.items():
        row = next(line for line in reference.splitlines() if line.startswith(f"| `{env_name(name)}`"))
        assert field.description and field.description.split()[0] in row, name
    assert "| `VITALSTREAM_TOPIC_PARTITIONS` | `4` |" in reference


def test_printed_settings_mask_the_kafka_password(monkeypatch, capsys) -> None:
    monkeypatch.setenv("VITALSTREAM_KAFKA_SASL_PASSWORD", "hunter2-very-secret")
    monkeypatch.setenv("VITALSTREAM_TOPIC_PARTITIONS", "24")
    for flags in ([], ["--json"]):
        assert main(["config", *flags]) == 0
        out = capsys.readouterr().out
        assert "hunter2" not in out
        assert "24" in out and "**********" in out


def test_a_setting_of_the_wrong_type_is_one_line_naming_the_variable(monkeypatch, capsys) -> None:
    monkeypatch.setenv("VITALSTREAM_BATCH_SIZE", "a thousand")
    assert main(["config"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "VITALSTREAM_BATCH_SIZE" in err


def test_a_missing_reference_file_is_a_usage_error(tmp_path, capsys) -> None:
    assert main(["config", "--check", str(tmp_path / "nope.md")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("variable", [v for v in OTHER_VARIABLES if v.name.startswith("VITALSTREAM_")],
                         ids=lambda v: v.name)
def test_documented_other_variables_are_still_read_by_the_code(variable) -> None:
    # A variable dropped or renamed where it is read must leave the reference too.
    readers = [path for path in (ROOT / "vitalstream").rglob("*.py")
               if path.name != "config.py" or path.parent.name != "commands"]
    pattern = re.compile(rf"\b{variable.name}\b")
    assert any(pattern.search(path.read_text()) for path in readers), variable.name
