"""What every batched background job shares: the runtime, its batch size, who it acts as.

The retention-style jobs (expired tokens, retired personal keys) each delete in batches of
``MEDCHAT_RETENTION_BATCH`` rows, one transaction per batch opened through
``runtime.database``, and audit as the system unless the caller (a CLI command) says who.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medchat import audit

if TYPE_CHECKING:  # the service context is passed in; importing it would run back up a layer
    from medchat.services.context import ServiceContext


class BatchJob:
    def __init__(
        self,
        runtime: ServiceContext,
        *,
        batch_size: int | None = None,
        audit_context: audit.AuditContext | None = None,
    ) -> None:
        self.runtime = runtime
        self.batch_size = runtime.settings.retention_batch if batch_size is None else batch_size
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.audit_context = audit_context or audit.AuditContext(actor_role="system")
