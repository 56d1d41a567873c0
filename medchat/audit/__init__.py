"""The keyed audit chain (``chain``) and its signed anchors (``anchor``).

``from medchat import audit`` then ``audit.record(...)`` is how every service writes to it, so
the chain's public functions are named here.
"""

from medchat.audit.chain import (
    AUDIT_CHAIN,
    AuditContext,
    VerifyResult,
    append_pending,
    checked_head,
    get_context,
    record,
    record_on_rollback,
    set_context,
    verify,
)

__all__ = [
    "AUDIT_CHAIN",
    "AuditContext",
    "VerifyResult",
    "append_pending",
    "checked_head",
    "get_context",
    "record",
    "record_on_rollback",
    "set_context",
    "verify",
]
