"""Retired personal keys are deleted once nothing is sealed to them (issue 18 item 7).

A password reset or a re-enrollment gives the account a new keypair and retires the old one.
The old private key stays sealed under the *old* password: kept, a database copy taken any
time later plus that password (remembered by someone, guessed, or found in a breach) opens it.
It is needed for nothing once no conversation wrap and no role-key grant is sealed to it: a
reset deletes the member wraps at once and queues re-wraps to the new key; a staff reset
deletes the grants. So the row goes (``PersonalKeys.forget_retired``):

- at once, where the flow knows nothing is left: a member's password reset (after the old
  wraps are deleted), a re-enrollment (after the reset revoked the grants), and a re-wrap drain
  that finishes a member's last request;
- and in the daily ``medchat retention run`` (this module), which walks every retired key in
  batches, one transaction each, for whatever the flows left (a key still named then).

The walk is keyset-paged by row id and takes rows ``FOR UPDATE SKIP LOCKED`` on PostgreSQL,
so runs on several hosts share it; each deletion is audited ``key.personal_forget`` and a run
that deleted something writes one ``key.personal_forget_run`` with the count.
"""

from __future__ import annotations

import uuid

from medchat import audit
from medchat.storage.batch_jobs import BatchJob

RUN_ACTION = "key.personal_forget_run"


class RetiredKeySweep(BatchJob):
    """Deletes every retired personal key nothing is sealed to, one transaction per batch."""

    def count_due(self) -> int:
        """How many a run would delete now; changes nothing."""
        due, after = 0, None
        with self.runtime.database.transaction() as session:
            custody = self.runtime.custody(session)
            while True:
                rows, after = custody.unused_retired(after=after, limit=self.batch_size)
                due += len(rows)
                if after is None:
                    return due

    def run(self) -> int:
        """Delete them all; returns how many went. A failing batch raises after its
        transaction is rolled back; the batches before it stay done."""
        deleted, after = 0, None
        while True:
            with self.runtime.database.transaction() as session:
                audit.set_context(session, self.audit_context)
                count, after = self.runtime.custody(session).forget_retired(
                    after=after, limit=self.batch_size
                )
            deleted += count
            if after is None:
                break
        if deleted:
            with self.runtime.database.transaction() as session:
                audit.set_context(session, self.audit_context)
                audit.record(
                    session,
                    RUN_ACTION,
                    target_type="run",
                    target_id=uuid.uuid4(),
                    details={"deleted": deleted},
                )
        return deleted
