"""Silent (shadow) mode: a candidate policy configuration, or model version, decides
beside the live one on the same assessments, and its alerts go to ``alerts.shadow``,
never to a station.

Configured at start (``VITALSTREAM_SHADOW``), JSON:

    {"policy": {"news2_medium": 4, "news2_high": 6}, "model_version": "sepsis-vitals-1+437a514719"}

``policy`` overrides fields of the live PolicyConfig; ``model_version`` names a model file
in ``models/`` (default: the live model). An unknown field or model version stops the
worker at start with one line (``ShadowConfigError``).

Cheap by construction: the shadow runs after the live policy, on the assessments the
monitor already made (NEWS2, observations, the live risk), with its own state per
patient, and takes the policy's short path for quiet patients as the live one does. A
candidate model scores only the rows the live model scored (once a minute per patient),
in the same call's batch. The shadow sees no acknowledgements (no nurse sees its alerts),
keeps its state in memory only (a restarted worker's shadow starts afresh), and raises
clinical alerts only: technical alerts do not depend on the policy's thresholds.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from vitalstream.alerts import Alert, AlertPolicy, Assessment, PolicyConfig
from vitalstream.governance.audit import policy_version
from vitalstream.policy_settings import PolicySettingsError
from vitalstream.policy_settings import policy_config as checked_policy_config

log = logging.getLogger("vitalstream.governance")

Write = tuple[str, bytes, bytes, "int | None"]
MODELS_DIR = Path(__file__).resolve().parents[2] / "models"


class ShadowConfigError(PolicySettingsError):
    """A shadow configuration that cannot run; the message is one readable line."""


def policy_config(overrides: Any, base: PolicyConfig | None = None) -> PolicyConfig:
    """``base`` (the default PolicyConfig) with ``overrides``, checked as the live policy is
    (`vitalstream.policy_settings`); ShadowConfigError if unusable."""
    try:
        return checked_policy_config(overrides, base)
    except ShadowConfigError:
        raise
    except PolicySettingsError as exc:
        raise ShadowConfigError(str(exc)) from None


def available_models(directory: Path = MODELS_DIR) -> dict[str, Any]:
    """Model version -> loaded model, for every model file in ``directory``."""
    from vitalstream.scoring.model import ModelFileError, RiskModel

    found = {}
    for path in sorted(directory.glob("*.skops")):
        try:
            model = RiskModel.load_isolated(path)
        except ModelFileError as exc:
            log.warning("shadow: %s not usable (%s)", path.name, exc)
            continue
        found[model.version] = model
    return found


@dataclasses.dataclass
class ShadowConfig:
    policy: PolicyConfig
    model_version: str | None = None
    model: Any = None  # the candidate model, if it is not the live one

    @property
    def version(self) -> str:
        return policy_version(self.policy)


def load_shadow(text: str, live_policy: PolicyConfig, live_model: Any,
                models_dir: Path = MODELS_DIR) -> ShadowConfig | None:
    """``VITALSTREAM_SHADOW`` checked; None when empty. ShadowConfigError, one line, else."""
    if not text.strip():
        return None
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ShadowConfigError("VITALSTREAM_SHADOW is not JSON") from None
    if not isinstance(document, Mapping) or not document:
        raise ShadowConfigError("VITALSTREAM_SHADOW must be {\"policy\": {...}, \"model_version\": ...}")
    unknown = sorted(set(document) - {"policy", "model_version"})
    if unknown:
        raise ShadowConfigError(f"VITALSTREAM_SHADOW: unknown key(s) {', '.join(unknown)}")
    config = ShadowConfig(policy_config(document.get("policy"), live_policy))
    wanted = document.get("model_version")
    if wanted is not None:
        if not isinstance(wanted, str):
            raise ShadowConfigError("shadow model_version must be a string")
        live_version = getattr(live_model, "version", None)
        if wanted != live_version:
            models = available_models(models_dir)
            if wanted not in models:
                known = ", ".join(sorted({*models, *([live_version] if live_version else [])})) or "none"
                raise ShadowConfigError(f"shadow model version {wanted!r} is not a model in {models_dir} "
                                        f"(available: {known})")
            config.model = models[wanted]
        config.model_version = wanted
    return config


class Shadow:
    """The candidate's decisions on the live assessments; ``assess`` returns the shadow
    alerts of a batch and ``writes`` their messages for ``alerts.shadow``."""

    def __init__(self, config: ShadowConfig, topic: str) -> None:
        self.config = config
        self.policy = AlertPolicy(config.policy)
        self.topic = topic
        self.states: dict[str, Any] = {}
        self.risks: dict[str, tuple[float, int, str]] = {}  # candidate model: patient -> (risk, ms, version)
        self._risk_rules = bool(config.policy.risk_thresholds)

    def on_risk(self, chosen: Sequence[tuple[Assessment, Any]], rows: Any) -> None:
        """The rows the live model scored: the candidate model scores the same ones."""
        model = self.config.model
        if model is None or not len(chosen):
            return
        for (assessment, _), risk in zip(chosen, model.predict_proba(rows), strict=True):
            self.risks[assessment.patient_id] = (float(risk), assessment.time_ms, model.version)

    def assess(self, assessments: Sequence[Assessment]) -> list[Alert]:
        out: list[Alert] = []
        policy, states, risks = self.policy, self.states, self.risks
        candidate = self.config.model is not None
        for assessment in assessments:
            state = states.get(assessment.patient_id)
            if state is None:
                state = states[assessment.patient_id] = policy.new_state()
            if candidate and assessment.risk is not None:
                risk = risks.get(assessment.patient_id)
                assessment = dataclasses.replace(
                    assessment, risk=risk[0] if risk else None, risk_ms=risk[1] if risk else None,
                    model_version=risk[2] if risk else None, risk_factors=(), explain=None)
            if not self._risk_rules and policy.quiet(state, assessment.news2):
                policy.remember_quiet(state, assessment)
                continue
            out.extend(a for a in policy.assess(state, assessment) if a.kind == "clinical")
        policy.drain_events()
        return out

    def forget(self, patient_ids: Sequence[str]) -> None:
        for patient_id in patient_ids:
            self.states.pop(patient_id, None)
            self.risks.pop(patient_id, None)

    def writes(self, alerts: Sequence[Alert]) -> list[Write]:
        out = []
        for alert in alerts:
            record = alert.to_dict()
            record["shadow"] = {"policy_version": self.config.version, "model_version": self.config.model_version}
            out.append((self.topic, alert.ward.encode(), orjson.dumps(record), None))
        return out
