"""A due rotation is not advisory: past its deadline nothing new is sealed to the key.

SECURITY-MODEL key hierarchy 11: each loss of a role key (grant revoked, account disabled,
staff reset) makes the key's rotation due (``KeyCustody.mark_rotation_due``), because whoever
lost it may still hold it (a copy kept, or rebuilt from an earlier database copy and their
password). New content no longer reaches it (new key epochs go to a successor key made at
the loss: ``medchat.keys.successors``), but until the rotation the live database keeps every
older wrap sealed to it (a later copy still opens the history with it), and the successors
are trusted on their row tags, not pinned. The rotation re-seals those wraps to a pinned key
and retires the old key and its successors. So the wait is bounded:

- **due** (from the mark until ``MEDCHAT_ROTATION_DEADLINE_HOURS`` later): the service warns.
  The holders are mailed at the mark (``medchat.services.rotation_notices``), staff answers of
  a request that sealed content carry ``Medchat-Rotation-Due: physician`` (or ``archive``), a
  warning is logged at each such seal, and ``medchat keys status`` says ``ROTATION DUE``;
- **overdue** (past the deadline): every seal of new content (a question, a message, an
  attachment, a new key epoch) is refused with ``503 rotation_overdue`` naming the role, until
  a holder runs ``medchat keys rotate``, whose activation makes a key active that is not due.
  Reads, re-wraps, rotations and re-seals of existing content go on.

The deadline is counted from the earliest mark (``rotation_due_at``): later revocations do not
move it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from medchat.errors import RotationOverdue

log = logging.getLogger("medchat.keys.rotation_deadline")

#: ``session.info`` key: roles whose rotation is due (or overdue), noticed by a seal in this
#: unit of work (``medchat.web.rotation_due`` puts them in a staff answer's header).
DUE_INFO = "rotation_due_roles"


def overdue(due: Mapping[str, datetime], now: datetime, deadline: timedelta) -> dict[str, datetime]:
    """The roles (with their deadlines) whose active key is past its rotation deadline."""
    return {role: at + deadline for role, at in due.items() if now >= at + deadline}


def require_sealable(
    due: Mapping[str, datetime], now: datetime, deadline: timedelta, info: dict[str, Any]
) -> None:
    """Refuse (``RotationOverdue``) a seal to a key past its deadline; note one that is due.

    ``due`` maps a role to since when its active key has been due; ``info`` is the unit of
    work's ``session.info``, where due roles are noted for the answer's header.
    """
    if not due:
        return
    noted: set[str] = info.setdefault(DUE_INFO, set())
    noted.update(due)
    late = overdue(due, now, deadline)
    if late:
        roles = sorted(late)
        log.error("refused to seal new content: rotation overdue for %s", ", ".join(roles))
        raise RotationOverdue(
            f"New content cannot be sealed: the rotation of the {' and '.join(roles)} role key"
            f" was due by {min(late.values()).isoformat()}. A holder of the key must run"
            " 'medchat keys rotate'.",
            details={"roles": roles, "deadline": min(late.values()).isoformat()},
        )
    log.warning("sealed new content to a key whose rotation is due: %s", ", ".join(sorted(due)))
