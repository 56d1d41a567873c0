"""What ``medchat keys status`` shows: each role-key version, what still uses it, what is due.

SECURITY-MODEL key hierarchy 8 and 11: an old version may be retired only once no wrap uses it,
and every revocation makes a rotation due. Per version: status, fingerprint, whether this
deployment pins it, how many conversation wraps are sealed to it and how many holders have a
copy, since when (and why) a rotation is due and from when new content is refused for it
(``medchat.keys.rotation_deadline``); per role, the progress of an unfinished rotation; and how many
conversations still wait for their first key epoch's record (``medchat keys migrate-epochs``).
Counts and ids only: nothing here opens or names a person.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from medchat.archive.gate import GATED, wrapped_for
from medchat.keys.custody import KeyCustody
from medchat.keys.epoch_migration import remaining_conversations
from medchat.models import (
    ConversationKeyWrap,
    KeyRole,
    RoleKey,
    RoleKeyGrant,
    RoleKeyRotation,
    RoleKeyStatus,
)


@dataclass(frozen=True)
class VersionStatus:
    role: str
    version: int
    status: str
    fingerprint: str
    pinned: bool
    wraps: int
    holders: int
    rotation_due_since: datetime | None
    rotation_due_reason: str | None
    #: From then on nothing new is sealed to this version until it is rotated.
    rotation_deadline: datetime | None = None


@dataclass(frozen=True)
class RotationProgress:
    role: str
    from_version: int
    to_version: int
    started_at: datetime
    activated_at: datetime | None
    resealed: int
    remaining: int


@dataclass(frozen=True)
class KeyStatus:
    versions: list[VersionStatus]
    rotations: list[RotationProgress]
    #: Conversations from before key epochs without their epoch-1 record yet.
    epochs_to_migrate: int = 0

    def due(self) -> list[VersionStatus]:
        """Versions in use that a revocation marked for rotation."""
        return [
            v
            for v in self.versions
            if v.rotation_due_since is not None and v.status != RoleKeyStatus.RETIRED
        ]

    def as_dict(self) -> dict[str, Any]:
        return {
            "versions": [_plain(asdict(v)) for v in self.versions],
            "rotations": [_plain(asdict(r)) for r in self.rotations],
            "epochs_to_migrate": self.epochs_to_migrate,
        }


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in item.items()}


def key_status(
    session: Session, custody: KeyCustody, deadline: timedelta | None = None
) -> KeyStatus:
    """Every role-key version with its counts; unfinished rotations with their progress.

    ``deadline``: ``MEDCHAT_ROTATION_DEADLINE_HOURS``, to say when a due rotation stops seals.
    """
    # Gated archive wraps (live conversations') count as the archive key's.
    wraps: Counter[tuple[str, bytes]] = Counter()
    for holder, key_id, count in session.execute(
        select(ConversationKeyWrap.holder, ConversationKeyWrap.recipient_key_id, func.count())
        .where(ConversationKeyWrap.holder.in_([KeyRole.PHYSICIAN, KeyRole.ARCHIVE, GATED]))
        .group_by(ConversationKeyWrap.holder, ConversationKeyWrap.recipient_key_id)
    ):
        wraps[(wrapped_for(holder), key_id)] += count
    holders = dict(
        session.execute(
            select(RoleKeyGrant.role_key_id, func.count()).group_by(RoleKeyGrant.role_key_id)
        ).all()
    )
    rows = list(session.scalars(select(RoleKey).order_by(RoleKey.role, RoleKey.version)))
    by_id = {row.id: row for row in rows}
    versions = [
        VersionStatus(
            role=row.role,
            version=row.version,
            status=row.status,
            fingerprint=row.fingerprint,
            pinned=custody.is_pinned(row),
            wraps=wraps.get((row.role, row.key_id), 0),
            holders=holders.get(row.id, 0),
            rotation_due_since=row.rotation_due_at,
            rotation_due_reason=row.rotation_reason,
            rotation_deadline=(
                row.rotation_due_at + deadline
                if row.rotation_due_at is not None and deadline is not None
                else None
            ),
        )
        for row in rows
    ]
    rotations = []
    for rotation in session.scalars(
        select(RoleKeyRotation)
        .where(RoleKeyRotation.finished_at.is_(None))
        .order_by(RoleKeyRotation.role)
    ):
        old, new = by_id[rotation.from_key_id], by_id[rotation.to_key_id]
        rotations.append(
            RotationProgress(
                role=rotation.role,
                from_version=old.version,
                to_version=new.version,
                started_at=rotation.started_at,
                activated_at=rotation.activated_at,
                resealed=rotation.resealed,
                remaining=wraps.get((rotation.role, old.key_id), 0),
            )
        )
    return KeyStatus(versions, rotations, remaining_conversations(session))
