"""The kill switch: an administrator turns the model's part of the alerting off (NEWS2
only) or back on, per ward or everywhere, at run time.

Modes:

- ``normal``: NEWS2 and the risk model, as validated.
- ``news2_only``: the risk model is not run; alerts come from NEWS2 and single
  parameters only, and carry no risk. (Turning "the model's part off" and "falling back
  to NEWS2-only" are the same mode here: NEWS2 is the only other part.)

An instruction is a signed control message on ``control.killswitch`` (admin key, and an
actor whose role is ``admin``):

    {"kill_switch": {"mode": "news2_only", "scope": "*" or a ward, "reason": "...",
                     "actor": {"user_id": "u-…", "role": "admin", "name": "…"}, "at_ms": 1773…}}

For a ward, the newest instruction that covers it wins, its ward's or everywhere's: a
later "everywhere normal" brings every ward back. Pure: the worker forwards the
instructions into every partition of ``vitals`` (so each applies in order with the
readings) and calls ``apply``.

>>> switch = KillSwitch()
>>> switch.mode_for("4B")
'normal'
>>> switch.apply(parse_instruction({"kill_switch": {"mode": "news2_only", "scope": "4B",
...     "reason": "drift", "at_ms": 10,
...     "actor": {"user_id": "u-1", "role": "admin", "name": "A. Admin"}}}))
True
>>> switch.mode_for("4B"), switch.mode_for("4C"), switch.model_off()
('news2_only', 'normal', (False, frozenset({'4B'})))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from vitalstream.governance.audit import AuditRecordError, check_actor, stable_id

MODES: tuple[str, ...] = ("normal", "news2_only")
EVERYWHERE = "*"
MAX_SCOPE_CHARS = 40
MAX_REASON_CHARS = 200


class InstructionError(ValueError):
    """A kill-switch message that is refused; the message is the reason."""


@dataclasses.dataclass(frozen=True, slots=True)
class Instruction:
    mode: str
    scope: str
    reason: str
    actor: Mapping[str, str]
    at_ms: int

    @property
    def id(self) -> str:
        return stable_id("kill_switch", self.mode, self.scope, self.at_ms, dict(self.actor))

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "scope": self.scope, "reason": self.reason,
                "actor": dict(self.actor), "at_ms": self.at_ms}


def parse_instruction(body: Any) -> Instruction:
    """A kill-switch message, checked; InstructionError with the reason if refused."""
    if not isinstance(body, Mapping) or not isinstance(body.get("kill_switch"), Mapping):
        raise InstructionError("expected {\"kill_switch\": {...}}")
    item = body["kill_switch"]
    mode, scope, reason, at_ms = item.get("mode"), item.get("scope"), item.get("reason", ""), item.get("at_ms")
    if mode not in MODES:
        raise InstructionError(f"mode must be one of {', '.join(MODES)}")
    if not (isinstance(scope, str) and 0 < len(scope) <= MAX_SCOPE_CHARS):
        raise InstructionError("scope must be \"*\" or a ward name")
    if not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS:
        raise InstructionError(f"reason must be a string of at most {MAX_REASON_CHARS} characters")
    if not isinstance(at_ms, int) or isinstance(at_ms, bool) or at_ms <= 0:
        raise InstructionError("at_ms must be a positive integer")
    try:
        actor = check_actor(item.get("actor"))
    except AuditRecordError as exc:
        raise InstructionError(str(exc)) from None
    if actor["role"] != "admin":
        raise InstructionError("only an admin may throw the kill switch")
    return Instruction(mode, scope, reason.strip(), actor, at_ms)


class KillSwitch:
    """The mode of each ward, from the instructions applied so far."""

    def __init__(self) -> None:
        self.instructions: dict[str, Instruction] = {}  # scope -> its newest instruction

    def apply(self, instruction: Instruction) -> bool:
        """Take an instruction; whether it changed anything (a replayed or older one does not)."""
        current = self.instructions.get(instruction.scope)
        if current is not None and (current.at_ms, current.id) >= (instruction.at_ms, instruction.id):
            return False
        self.instructions[instruction.scope] = instruction
        return True

    def _governing(self, ward: str) -> Instruction | None:
        candidates = [i for i in (self.instructions.get(ward), self.instructions.get(EVERYWHERE)) if i]
        return max(candidates, key=lambda i: (i.at_ms, i.id)) if candidates else None

    def mode_for(self, ward: str) -> str:
        governing = self._governing(ward)
        return governing.mode if governing else "normal"

    def model_off(self) -> tuple[bool, frozenset[str]]:
        """(off by default, wards that differ from the default): the monitor's form."""
        everywhere = self.instructions.get(EVERYWHERE)
        default_off = everywhere is not None and everywhere.mode == "news2_only"
        differ = frozenset(w for w in self.instructions if w != EVERYWHERE
                           and (self.mode_for(w) == "news2_only") != default_off)
        return default_off, differ

    def status(self) -> dict[str, Any]:
        """What /health and the board show: the default mode and every ward's own."""
        return {"default": self.mode_for("\x00"),
                "wards": {w: self.mode_for(w) for w in sorted(self.instructions) if w != EVERYWHERE},
                "instructions": [i.to_dict() for _, i in sorted(self.instructions.items())]}
