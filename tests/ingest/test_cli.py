"""`vitalstream ingest`: the integration engineer's offline check, through the CLI entry point."""

from __future__ import annotations

from pathlib import Path

import orjson

from vitalstream.cli import main
from vitalstream.samples import decode_sample

DATA = Path(__file__).parent / "data"


def test_hl7_file_with_mllp_frames_and_blank_lines(tmp_path, capsys):
    monitor = (DATA / "pcd01_monitor.hl7").read_bytes()
    wrong_type = b"MSH|^~\\&|ADT|H|||20260315101500||ADT^A01|2|P|2.6\rPID|||MRN-1"
    framed = tmp_path / "framed.hl7"
    framed.write_bytes(b"\x0b" + monitor + b"\x1c\r" + b"\x0b" + wrong_type + b"\x1c\r")
    blank_lines = tmp_path / "lines.hl7"
    blank_lines.write_bytes(monitor.replace(b"\r", b"\n") + b"\n\n" + monitor.replace(b"\r", b"\n"))
    status = main(["ingest", "--format", "hl7", str(framed), str(blank_lines)])
    captured = capsys.readouterr()
    samples = [decode_sample(line) for line in captured.out.encode().splitlines()]
    # Three monitor reports with six samples each; the ADT message is the one rejection.
    assert len(samples) == 18 and {s.patient_id for s in samples} == {"MRN-4711"}
    errors = captured.err.splitlines()
    assert errors[0] == f"{framed}:2: unsupported_message: message type 'ADT^A01'; expected ORU^R01"
    assert errors[-1].startswith("4 messages: 3 accepted (18 samples, 3 technical events")
    assert status == 1


def test_fhir_ndjson_one_message_per_line_with_technical_events(tmp_path, capsys):
    bundle = orjson.loads((DATA / "fhir_transaction_bp_panel.json").read_bytes())
    observations = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"]
    for resource in observations:  # outside the Bundle, refer to the patient by literal id
        resource["subject"] = {"reference": "Patient/pat-1"}
    ndjson = tmp_path / "obs.ndjson"
    ndjson.write_bytes(b"\n".join([*map(orjson.dumps, observations), b"{not json"]) + b"\n")
    status = main(["ingest", "--format", "fhir", "--technical", str(ndjson)])
    captured = capsys.readouterr()
    lines = [orjson.loads(line) for line in captured.out.splitlines()]
    samples = [line for line in lines if "technical" not in line]
    technical = [line["technical"] for line in lines if "technical" in line]
    assert sorted(s["parameter"] for s in samples) == [
        "diastolic_bp", "on_oxygen", "spo2", "systolic_bp", "temperature"]
    assert [t["parameter"] for t in technical] == ["resp_rate"]
    # The vital-signs panel alone has nothing to chart; the last line is not JSON.
    assert [line.split(": ")[1] for line in captured.err.splitlines()[:-1]] == ["no_observations", "not_json"]
    assert status == 1


def test_all_parsed_exits_zero_and_usage_errors_exit_two(tmp_path, capsys):
    assert main(["ingest", "--format", "fhir", str(DATA / "fhir_transaction_bp_panel.json")]) == 0
    assert main(["ingest", "--format", "hl7", str(tmp_path / "missing.hl7")]) == 2
    assert main(["ingest", "--format", "csv", str(DATA / "pcd01_monitor.hl7")]) == 2
    assert main(["ingest", "--format", "hl7", str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-3].endswith("missing.hl7") and "invalid choice" in err[-2]
