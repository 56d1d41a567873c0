"""Typed tables. Import from here so every model is registered on ``Base.metadata``."""

from medchat.models.accounts import (
    Account,
    AccountStatus,
    EnrollmentToken,
    MemberProfile,
    RecoveryCode,
)
from medchat.models.archive import ArchiveRecord, RetrievalRequest
from medchat.models.audit import AuditEntry, ChainHead
from medchat.models.claims import ConversationClaim
from medchat.models.conversations import (
    LIVE_STATUSES,
    RECORD_COLUMNS,
    Attachment,
    Consent,
    Conversation,
    ConversationKeyWrap,
    ConversationRead,
    ConversationRecord,
    ConversationRow,
    ConversationStatus,
    Holder,
    IdempotencyRecord,
    Message,
)
from medchat.models.drafts import ConversationDraft
from medchat.models.epochs import ConversationKeyEpoch, KeyReaderRemoval
from medchat.models.keys import KeyRole, PersonalKey, RoleKey, RoleKeyGrant, RoleKeyStatus
from medchat.models.lifecycle import (
    EmailChangeToken,
    PasswordResetToken,
    RewrapRequest,
    RoleKeyRotation,
)
from medchat.models.notifications import (
    Channel,
    KnownDevice,
    NotificationKind,
    NotificationOutbox,
    NotificationPreference,
    PushSubscription,
)
from medchat.models.restrictions import ProcessingRestriction, RestrictionGround
from medchat.models.templates import ReplyTemplate
from medchat.models.tokens import AuthToken, TokenKind

__all__ = [
    "LIVE_STATUSES",
    "RECORD_COLUMNS",
    "Account",
    "AccountStatus",
    "ArchiveRecord",
    "Attachment",
    "AuditEntry",
    "AuthToken",
    "ChainHead",
    "Channel",
    "Consent",
    "Conversation",
    "ConversationClaim",
    "ConversationDraft",
    "ConversationKeyEpoch",
    "ConversationKeyWrap",
    "ConversationRead",
    "ConversationRecord",
    "ConversationRow",
    "ConversationStatus",
    "EmailChangeToken",
    "EnrollmentToken",
    "Holder",
    "IdempotencyRecord",
    "KeyReaderRemoval",
    "KeyRole",
    "KnownDevice",
    "MemberProfile",
    "Message",
    "NotificationKind",
    "NotificationOutbox",
    "NotificationPreference",
    "PasswordResetToken",
    "PersonalKey",
    "ProcessingRestriction",
    "PushSubscription",
    "RecoveryCode",
    "ReplyTemplate",
    "RestrictionGround",
    "RetrievalRequest",
    "RewrapRequest",
    "RoleKey",
    "RoleKeyGrant",
    "RoleKeyRotation",
    "RoleKeyStatus",
    "TokenKind",
]
