"""The only shape of a member a clinician ever gets: first name, birth date, sex, pseudonym.

SECURITY-MODEL "Who uses it": a clinician may see of the patient only the first name, the
birth date, the sex and a per-conversation pseudonym; never the last name, e-mail, phone,
insurance number, member id, or anything that links two conversations of one person.
Every clinician-facing answer builds its ``patient`` object here, and the query below selects
only those columns, so the other personal fields are not even loaded (let alone decrypted).
The three are sealed at rest under the profile key like every personal field
(``medchat.keys.personal_data``) and opened here, for the clinician's answer only: nothing
sorts or filters on them (the queue is ordered by the conversation's own times).

Files are shown to a clinician under a neutral name (``photo-2.jpg``), never the name the
member uploaded them under: ``sees_upload_names`` is the one rule, applied wherever an
attachment's name is opened for someone (``medchat.services.message_views``).

The pseudonym is an HMAC (integrity key from ``MEDCHAT_KEY_DIR``, a fixed label) of the
conversation id alone: stable for one conversation, unrelated across two conversations of the
same member, and not computable by someone holding only the database.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from access_control import crypto
from access_control.roles import Role
from medchat.models import Account, MemberProfile

if TYPE_CHECKING:
    from medchat.services.context import ServiceContext

_PSEUDONYM_LABEL = "medchat/patient-pseudonym/v1"
#: 5 bytes = 40 bits = exactly 8 base32 characters: short enough to say over the phone.
_PSEUDONYM_BYTES = 5


class OfMember(Protocol):
    """A conversation row or view: its id and the member it belongs to."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def member_id(self) -> uuid.UUID: ...


@dataclass(frozen=True)
class PatientView:
    """Exactly what a clinician may know of the member behind one conversation."""

    pseudonym: str
    first_name: str
    birth_date: date | None
    sex: str | None


def pseudonym_for(integrity_key: bytes, conversation_id: uuid.UUID) -> str:
    """``P-`` and 8 base32 characters derived from the conversation id only (never the member).

    The member id is deliberately not an input: two conversations of one person must not be
    linkable through their pseudonyms.
    """
    tag = crypto.mac(integrity_key, _PSEUDONYM_LABEL, conversation_id)[:_PSEUDONYM_BYTES]
    return "P-" + base64.b32encode(tag).decode("ascii")


def patient_views(
    session: Session, runtime: ServiceContext, conversations: Iterable[OfMember]
) -> dict[uuid.UUID, PatientView]:
    """The patient object for each conversation, keyed by conversation id (one query)."""
    conversations = list(conversations)
    member_ids = {c.member_id for c in conversations}
    rows = {}
    if member_ids:
        rows = {
            row.id: row
            for row in session.execute(
                select(
                    Account.id,
                    Account.first_name_ciphertext,
                    MemberProfile.birth_date_ciphertext,
                    MemberProfile.sex_ciphertext,
                )
                .outerjoin(MemberProfile, MemberProfile.account_id == Account.id)
                .where(Account.id.in_(member_ids))
            )
        }
    profiles = runtime.profiles
    opened = {
        row.id: (
            profiles.open(row.id, "first_name", row.first_name_ciphertext) or "",
            profiles.open_date(row.id, "birth_date", row.birth_date_ciphertext),
            profiles.open(row.id, "sex", row.sex_ciphertext),
        )
        for row in rows.values()
    }
    views = {}
    for conversation in conversations:
        first_name, birth_date, sex = opened.get(conversation.member_id, ("", None, None))
        views[conversation.id] = PatientView(
            pseudonym=pseudonym_for(runtime.keys.integrity, conversation.id),
            first_name=first_name,
            birth_date=birth_date,
            sex=sex,
        )
    return views


def patient_view(session: Session, runtime: ServiceContext, conversation: OfMember) -> PatientView:
    """The patient object for one conversation."""
    return patient_views(session, runtime, [conversation])[conversation.id]


def sees_upload_names(role: str) -> bool:
    """Whether ``role`` is shown the names files were uploaded under: only a member (their own
    conversations, their export). Clinicians, compliance officers reading an archived
    conversation and anyone else get neutral names (``attachment_names.neutral_name``)."""
    return role == Role.MEMBER
