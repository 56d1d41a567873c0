"""The keyed audit chains (``chain``), their verification (``verification``) and signed
anchors (``anchor``).

``from medchat import audit`` then ``audit.record(...)`` is how every service writes to it, so
the chain's public functions are named here.
"""

from medchat.audit.chain import (
    AuditContext,
    append_pending,
    get_context,
    record,
    record_on_rollback,
    set_context,
)
from medchat.audit.heads import AUDIT_CHAIN
from medchat.audit.verification import VerifyResult, checked_heads, verify

__all__ = [
    "AUDIT_CHAIN",
    "AuditContext",
    "VerifyResult",
    "append_pending",
    "checked_heads",
    "get_context",
    "record",
    "record_on_rollback",
    "set_context",
    "verify",
]
