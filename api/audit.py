"""One line to write an audit event in the caller's transaction (it commits with the change it records)."""

from __future__ import annotations

import json
from typing import Any

from sqlmodel import Session

from models.records import AuditEvent


def audit(
    session: Session,
    *,
    actor: str,
    action: str,
    entity_kind: str,
    entity_id: object,
    reason: str = "",
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    event = AuditEvent(
        actor=actor[:60],
        action=action[:60],
        entity_kind=entity_kind[:40],
        entity_id=str(entity_id)[:60],
        reason=reason[:500],
        # Decimal, date and enum values are stored as their text (the JSON column cannot hold them as such).
        data=json.loads(json.dumps(data or {}, default=str)),
    )
    session.add(event)
    return event
