"""``Idempotency-Key``: a retried create returns the first result and creates nothing new.

API.md "Conventions": a retry with the same key and the same body gets the first result; the
same key with a different body is a 409. A record is keyed by (account, key) and remembers a
keyed MAC of the request (a label, the account, the scope and the canonical JSON body), never
a plain hash. The MAC key is derived from the caller's personal private key, which exists only
inside their session: neither a dump nor a dump plus the server's key directory can test
guesses of a message against it. No content is stored: the caller rebuilds the answer from
the stored resource id.

Concurrency: the record is *claimed* before anything is created, with the id the new
resource will get, inside a savepoint. Two racing requests both try to insert; the unique
constraint on (account, key) makes the second wait for the first and then fail (PostgreSQL),
or the database write lock runs them one after the other (SQLite). The loser rolls back only
its savepoint, reads the winner's record and replays it (or answers 409 for a different body),
so a race is never a 500 and never two resources.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from access_control import crypto
from medchat.errors import Conflict
from medchat.identity.principal import Principal
from medchat.models import IdempotencyRecord
from medchat.services.context import ServiceContext

_REQUEST_LABEL = "medchat/idempotency-request/v1"
T = TypeVar("T")


@dataclass
class Created(Generic[T]):
    """What a create answers: the resource, and whether it replays an earlier request's."""

    result: T
    replayed: bool = False


def canonical_json(payload: dict[str, Any]) -> str:
    """One text per meaning: sorted keys, no spaces, Unicode kept as is."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class IdempotencyService:
    def __init__(self, session: Session, runtime: ServiceContext) -> None:
        self.session = session
        self._now = runtime.clock.now

    def request_mac(self, actor: Principal, scope: str, payload: dict[str, Any]) -> bytes:
        """The keyed MAC that tells "the same request" from "a different one"."""
        key = actor.keyring.derive_secret("idempotency")
        return crypto.mac(key, _REQUEST_LABEL, actor.id, scope, canonical_json(payload))

    def claim(
        self,
        actor: Principal,
        key: str,
        scope: str,
        payload: dict[str, Any],
        resource_id: uuid.UUID,
    ) -> uuid.UUID | None:
        """Reserve ``key`` for creating ``resource_id``; or say which resource it made before.

        Returns ``None`` when this request now owns the key (go on and create
        ``resource_id`` in this transaction), or the id of the resource a previous request
        with the same key and body created (replay it, create nothing). Raises ``Conflict``
        when the key was used for a different request (another body, endpoint or
        conversation).
        """
        account_id = actor.id
        request_mac = self.request_mac(actor, scope, payload)
        existing = self._find(account_id, key)
        if existing is not None:
            return self._replay(existing, scope, request_mac)
        record = IdempotencyRecord(
            id=uuid.uuid4(),
            account_id=account_id,
            key=key,
            scope=scope,
            request_hash=request_mac,
            resource_id=resource_id,
            created_at=self._now(),
        )
        try:
            with self.session.begin_nested():
                self.session.add(record)
        except IntegrityError:
            # A concurrent request with the same key committed first: answer as its retry.
            existing = self._find(account_id, key)
            if existing is None:
                raise Conflict("A request with this Idempotency-Key is in progress.") from None
            return self._replay(existing, scope, request_mac)
        return None

    def _find(self, account_id: uuid.UUID, key: str) -> IdempotencyRecord | None:
        return self.session.scalar(
            select(IdempotencyRecord).where(
                IdempotencyRecord.account_id == account_id, IdempotencyRecord.key == key
            )
        )

    @staticmethod
    def _replay(record: IdempotencyRecord, scope: str, request_mac: bytes) -> uuid.UUID:
        if record.scope != scope or not crypto.constant_time_equal(
            record.request_hash, request_mac
        ):
            raise Conflict("This Idempotency-Key was already used for a different request.")
        return record.resource_id
