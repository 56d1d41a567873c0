"""Typed tables. Import from here so every model is registered on ``Base.metadata``."""

from medchat.models.accounts import (
    Account,
    AccountStatus,
    EnrollmentToken,
    MemberProfile,
    RecoveryCode,
)
from medchat.models.audit import AuditEntry, ChainHead
from medchat.models.tokens import AuthToken, TokenKind

__all__ = [
    "Account",
    "AccountStatus",
    "AuditEntry",
    "AuthToken",
    "ChainHead",
    "EnrollmentToken",
    "MemberProfile",
    "RecoveryCode",
    "TokenKind",
]
