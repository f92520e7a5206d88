"""`vitalstream score` names the keys it ignored: `{"rr": 22, "hr": 110}` scored quietly as
a partial NEWS2 of 0 would read as a reassuring score for a breathless, tachycardic patient."""

from __future__ import annotations

import io

import orjson

from vitalstream.cli import build_parser
from vitalstream.commands.score import SCORED_KEYS, score_stream


def score(text: str) -> tuple[int, list[dict], list[str]]:
    out, err = io.BytesIO(), io.StringIO()
    status = score_stream(io.BytesIO(text.encode()), out, err)
    return status, [orjson.loads(line) for line in out.getvalue().splitlines()], err.getvalue().splitlines()


def test_unknown_keys_are_named_with_the_key_meant():
    status, results, warnings = score('{"rr": 22, "spo2": 93, "hr": 110}\n')
    # Scored on SpO2 alone (2 points): RR 22 (2) and HR 110 (1) were not read.
    assert results[0]["news2"]["total"] == 2 and results[0]["news2"]["partial"] is True
    assert warnings == ["line 1: ignored unknown keys 'rr' (did you mean 'resp_rate'?), 'hr' (did you "
                        "mean 'heart_rate'?); accepted: " + ", ".join(SCORED_KEYS)]
    assert status == 0  # the score written is right for what was given


def test_a_misspelt_key_gets_the_closest_accepted_key_and_nonsense_none():
    _, _, warnings = score('{"heart_rat": 90, "colour": "blue", "resp_rate": 14}\n')
    assert warnings[0].startswith("line 1: ignored unknown keys 'heart_rat' (did you mean 'heart_rate'?), 'colour'; ")


def test_canonical_keys_and_diastolic_bp_give_no_warning():
    status, results, warnings = score('{"resp_rate": 22, "spo2": 93, "heart_rate": 110, "diastolic_bp": 70}\n')
    assert warnings == [] and status == 0
    assert results[0]["news2"]["total"] == 5  # RR 22: 2, SpO2 93: 2, HR 110: 1


def test_help_lists_every_accepted_key():
    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    text = subparsers.choices["score"].format_help()
    for key in SCORED_KEYS:
        assert f"\n  {key} " in text
    assert "diastolic_bp" in text and "warning" in text
