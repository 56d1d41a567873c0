"""What medchat keeps after a member erases their account, why, and for how long.

GDPR Art. 13(2)(a) and 17(3): the member is told what survives an erasure, for how long and on
which ground. This is the one statement of it; the export carries it (JSON
``kept_after_deletion``, FHIR the Patient's ``retention-after-deletion`` extension) and
docs/data-rights.md, "What is kept, why, and for how long", says the same in prose. The
periods come from the settings the retention job enforces, so the statement cannot promise
what the job does not do.
"""

from __future__ import annotations

from dataclasses import dataclass

from medchat.config import Settings


@dataclass(frozen=True)
class KeptItem:
    """One kind of record kept after erasure. ``retention_days`` is ``None`` for records kept
    as long as something else is (said in ``how_long``)."""

    kept: str
    what: str
    why: str
    how_long: str
    retention_days: int | None

    def as_dict(self) -> dict[str, object]:
        return {
            "kept": self.kept,
            "what": self.what,
            "why": self.why,
            "how_long": self.how_long,
            "retention_days": self.retention_days,
        }


def kept_after_deletion(settings: Settings) -> tuple[KeptItem, ...]:
    """The statement for this deployment's settings."""
    days = settings.archive_retention_days
    return (
        KeptItem(
            kept="sealed_archive",
            what="Your deleted conversations, encrypted and readable only with the compliance "
            "archive key; their ids, times and counts; your account id; a keyed hash of your "
            "e-mail address (not the address).",
            why="The insurer must keep medical exchanges for a legal period and show them to a "
            "court or regulator; two compliance officers together open one only for such a "
            "claim, and you see each opening in your access log while your account exists.",
            how_long=f"{days} days after each conversation was sealed, then destroyed by the "
            "retention job.",
            retention_days=days,
        ),
        KeptItem(
            kept="consent_history",
            what="Your account id, the purposes and text versions you consented to, and when "
            "each consent was given and withdrawn.",
            why="Evidence that the processing behind the archived conversations was lawful.",
            how_long="As long as archived conversations of your account are kept.",
            retention_days=None,
        ),
        KeptItem(
            kept="audit_trail",
            what="Ids, action codes and times of what was done with your data; no name, "
            "e-mail or content.",
            why="The tamper-evident record of who did what, which the insurer must be able to "
            "show; removing an entry would break its verification.",
            how_long="Kept with the service's audit trail.",
            retention_days=None,
        ),
        KeptItem(
            kept="account_tombstone",
            what="Your account id, the role member, the status deleted and the creation and "
            "deletion times.",
            why="The archive, consent and audit records above refer to this id.",
            how_long="As long as those records are kept.",
            retention_days=None,
        ),
    )
