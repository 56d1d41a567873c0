"""The long-lived collaborators a service needs, built once per process.

Services receive a database session and this ``ServiceContext`` (settings, server keys, clock,
password hasher, profile cipher, the mail postman) instead of reaching into Flask's
``current_app``, so they are plain Python and tested without HTTP.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import inspect, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from access_control.key_directory import ServerKeys, load_server_keys
from access_control.password_kdf import ScryptParams
from access_control.password_work import PasswordWork
from access_control.passwords import PasswordHasher
from access_control.pins import RolePins
from access_control.row_tags import RowTagger
from access_control.sign_in_limits import SignInLimits
from access_control.unwrap_memo import UnwrapMemo
from medchat.archive.gate import ArchiveGate
from medchat.archive.signing import ArchiveSigner, load_archive_signer
from medchat.clock import Clock, SystemClock
from medchat.config import Settings
from medchat.db import Database
from medchat.errors import ConfigurationError, KeyIntegrityFailure, RowIntegrityFailure
from medchat.identity.tokens import TokenLifetimes
from medchat.keys.conversation_keys import ConversationKeys
from medchat.keys.custody import KeyCustody
from medchat.keys.personal_data import ProfileCipher
from medchat.models import RoleKey, RoleKeyStatus
from medchat.observability import metrics
from medchat.services.consent_texts import current_text
from medchat.services.mail import Mailer, Postman, mailer_from_url
from medchat.storage.row_integrity import TAGGER


@dataclass(frozen=True, repr=False)
class ServiceContext:
    settings: Settings
    keys: ServerKeys
    clock: Clock
    hasher: PasswordHasher
    profiles: ProfileCipher
    database: Database
    pins: RolePins
    scrypt: ScryptParams
    #: The adapter ``MEDCHAT_MAIL_URL`` names (SMTP relay or a folder of files).
    mailer: Mailer
    #: Delivers through ``mailer`` in the background, after the unit of work commits.
    postman: Postman
    #: Signs sealed-archive records and exports; checked against the pinned public key.
    archive_signer: ArchiveSigner
    #: Gates live conversations' archive wraps (``medchat.archive.gate``).
    archive_gate: ArchiveGate
    #: Failure budgets of sign-in and step-up, per account and address (shared storage).
    sign_in_limits: SignInLimits
    #: The process's bound on password hashing (``hasher`` runs on it): a flood answers 503.
    password_work: PasswordWork

    def __repr__(self) -> str:
        return f"ServiceContext(env={self.settings.env!r})"

    def custody(self, session: Session) -> KeyCustody:
        """Key custody bound to a unit of work and to the current time."""
        return KeyCustody(
            session,
            integrity_key=self.keys.integrity,
            pins=self.pins,
            scrypt=self.scrypt,
            now=self.clock.now(),
        )

    def conversation_keys(self, session: Session) -> ConversationKeys:
        return ConversationKeys(
            session,
            self.custody(session),
            self.keys.integrity,
            self.archive_gate,
            self.settings.rotation_deadline,
        )

    def token_lifetimes(self, staff: bool) -> TokenLifetimes:
        return TokenLifetimes(
            access=self.settings.access_token_ttl,
            refresh=self.settings.refresh_token_ttl(staff),
        )


def build_service_context(settings: Settings, clock: Clock | None = None) -> ServiceContext:
    """Load keys (generating them only in development) and connect the database.

    Raises ``ConfigurationError`` when the archive-signing key does not match its pin (or, in
    production, has none): see ``medchat.archive.signing``.
    """
    keys = load_server_keys(settings.key_dir, create_missing=not settings.is_production)
    clock = clock or SystemClock()
    database = Database(
        settings.database_url,
        info={
            "audit_mac_key": keys.audit_mac,
            # Seals each audit entry's network address (``medchat.audit.addresses``).
            "audit_address_key": keys.profile,
            "audit_chains": settings.audit_chain_count,
            "clock": clock,
            # One per process (per app): shared by this database's sessions, never stored.
            "unwrap_memo": UnwrapMemo(settings.unwrap_memo_seconds),
            # Tags and checks the rows that make the server act (``medchat.storage.row_integrity``).
            TAGGER: RowTagger(keys.integrity),
        },
    )
    mailer = mailer_from_url(settings.mail_url)
    # One cost for both uses of scrypt: the password hash's pre-hash and the personal key's
    # seal share a run only when their costs agree (access_control.password_kdf).
    scrypt = ScryptParams(log2_n=settings.scrypt_log2_n)
    password_work = PasswordWork(
        settings.password_work_slots, settings.password_work_wait_ms / 1000
    )
    return ServiceContext(
        settings=settings,
        keys=keys,
        clock=clock,
        hasher=PasswordHasher(settings.bcrypt_rounds, scrypt, password_work),
        profiles=ProfileCipher(keys),
        database=database,
        pins=RolePins(settings.key_dir, settings.role_key_pins or None),
        scrypt=scrypt,
        mailer=mailer,
        postman=Postman(mailer),
        archive_signer=load_archive_signer(
            keys.archive_signing,
            settings.archive_signing_public_key,
            production=settings.is_production,
        ),
        archive_gate=ArchiveGate(keys.archive_gate),
        sign_in_limits=SignInLimits(
            settings.ratelimit_storage_uri,
            settings.ratelimit_key_prefix,
            on_failure=metrics.sign_in_failed,
        ),
        password_work=password_work,
    )


def verify_role_key_pins(runtime: ServiceContext) -> None:
    """Every role key in use must match a pinned fingerprint, or the service does not start.

    A database not migrated yet has no role keys to check (``medchat db upgrade`` comes
    first in every deployment). A database that does not answer cannot be checked: the
    process starts, ``/readyz`` says 503, and every seal still checks the pins itself.
    """
    try:
        with runtime.database.transaction() as session:
            if not inspect(session.connection()).has_table(RoleKey.__tablename__):
                return
            custody = runtime.custody(session)
            in_use = select(RoleKey).where(RoleKey.status != RoleKeyStatus.RETIRED)
            try:
                rows = list(session.scalars(in_use))
            except RowIntegrityFailure as exc:
                raise ConfigurationError(
                    "refusing to start: a role key row fails its integrity tag (written around "
                    "the service; see the audit log's integrity.row_refused)"
                ) from exc
            for row in rows:
                if custody.awaiting_pin(row):
                    # A rotation's new key not yet in MEDCHAT_ROLE_KEY_PINS: nothing is sealed
                    # to it, so a host restarted before the operator added it still starts.
                    continue
                try:
                    custody.require_trusted(row)  # a successor: its tag and fingerprint
                except KeyIntegrityFailure as exc:
                    if custody.retired_since_listed(row):
                        continue  # another host's rotation retired it, then unpinned it
                    raise ConfigurationError(
                        f"refusing to start: the {row.role} role key version {row.version} "
                        f"({row.fingerprint}) is not pinned by this deployment"
                    ) from exc
    except DBAPIError:
        logging.getLogger("medchat.startup").warning(
            "the database does not answer; role-key pins are checked at each seal instead"
        )


def start_service_context(
    settings: Settings, clock: Clock | None = None, *, check_pins: bool = True
) -> ServiceContext:
    """What every process does before it serves anything, web or not: build the context,
    make sure the consent text members agree to exists, check the role-key pins.

    ``create_app`` starts with it; so do the tests of services that need no HTTP (they skip
    the blueprints and the OpenAPI document, most of an app's cost).
    """
    runtime = build_service_context(settings, clock)
    # The consent text members agree to must exist before the first member is asked.
    current_text(settings)
    if check_pins:
        try:
            verify_role_key_pins(runtime)
        except ConfigurationError:
            # A worker retries a refused start every few seconds (``medchat.web.standby``):
            # each attempt must leave no pooled connection behind.
            runtime.database.dispose()
            raise
    return runtime
