"""Roles and what each may do: one table, read by the station (for the signed-in user) and
by the worker (again, from the actor of a signed control record). Pure data, no I/O.

>>> may("bedside_nurse", "acknowledge"), may("admin", "acknowledge")
(True, False)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ROLES: tuple[str, ...] = ("bedside_nurse", "charge_nurse", "rapid_response", "physician", "admin")
CLINICAL_ROLES: frozenset[str] = frozenset({"bedside_nurse", "charge_nurse", "rapid_response", "physician"})

# action -> roles allowed. Loosening a patient's alert settings is narrower still
# (vitalstream.alerts.settings.check_role: physician only). Administrators manage users and
# see every ward's board, but take no clinical action: an action names a clinician.
PERMISSIONS: dict[str, frozenset[str]] = {
    "view": frozenset(ROLES),
    "acknowledge": CLINICAL_ROLES,
    "settings": CLINICAL_ROLES,
    "manage_users": frozenset({"admin"}),
}


def may(role: str, action: str) -> bool:
    return role in PERMISSIONS.get(action, frozenset())


class ActorError(ValueError):
    """A control record's actor that cannot be trusted; the message is the reason."""


def actor_from(record: Mapping[str, Any]) -> dict[str, str]:
    """The ``{"user_id", "role", "name"}`` a control record carries, checked for shape and a
    known role; raises ActorError."""
    actor = record.get("actor") if isinstance(record, Mapping) else None
    if not (isinstance(actor, Mapping)
            and all(isinstance(actor.get(k), str) and actor[k].strip() for k in ("user_id", "role", "name"))):
        raise ActorError("actor {user_id, role, name} (the signed-in user) is required")
    if actor["role"] not in ROLES:
        raise ActorError(f"unknown role {actor['role']!r}")
    return {"user_id": actor["user_id"][:64], "role": actor["role"], "name": actor["name"][:80]}
