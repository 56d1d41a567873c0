"""What a rotation's steps share: its locked row, the wraps still naming a key, the refusal to
retire a key some wraps still need, and the progress callback.

``RotationService`` (``medchat.keys.rotation``) decides when to activate and retire, and
``WrapResealer`` (``medchat.keys.rotation_wraps``) moves the wraps; both read a rotation's state
through these, so "what is left" and "who holds the run" are answered in one place.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from medchat.archive.gate import stored_holders
from medchat.errors import Conflict
from medchat.models import ConversationKeyWrap, RoleKeyRotation

#: Called with (wraps re-sealed so far, wraps to re-seal in all) after each batch.
Progress = Callable[[int, int], None]


class RotationBlocked(Conflict):
    """Some wraps do not open with the old key; retiring it would lose those conversations."""

    code = "role_key_rotation_blocked"


def locked_rotation(session: Session, rotation_id: uuid.UUID, role: str) -> RoleKeyRotation:
    """The unfinished rotation row, locked for this transaction (concurrent runs take turns).

    Raises ``Conflict`` when another run finished or abandoned it meanwhile.
    """
    rotation = session.get(RoleKeyRotation, rotation_id, with_for_update=True)
    if rotation is None or rotation.finished_at is not None:
        raise Conflict(f"the {role} rotation was finished or abandoned by another run")
    return rotation


def remaining_wraps(
    session: Session, holder: str, key_id: bytes, *, excluding: set[uuid.UUID] | None = None
) -> int:
    """Wraps of ``holder`` (gated or not) still naming ``key_id`` (leaving out conversations
    in ``excluding``)."""
    statement = (
        select(func.count())
        .select_from(ConversationKeyWrap)
        .where(
            ConversationKeyWrap.holder.in_(stored_holders(holder)),
            ConversationKeyWrap.recipient_key_id == key_id,
        )
    )
    if excluding:
        statement = statement.where(ConversationKeyWrap.conversation_id.notin_(excluding))
    return session.execute(statement).scalar_one()
