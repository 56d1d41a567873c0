"""Settings: one typed object read from ``MEDCHAT_*`` variables, safe by default.

A deployment configures medchat only through its environment (API.md "Configuration a
deployment sets"). Development gets working defaults (SQLite under ``./var``, keys generated
into ``./var/keys``); production refuses to start with anything that only makes sense on a
laptop: lowered password-hashing costs, generated keys, insecure cookies, SQLite.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from access_control.networks import IPNetwork, is_loopback_only, parse_networks
from access_control.service_hours import ServicePeriod, parse_service_hours
from medchat.errors import ConfigurationError

PRODUCTION_BCRYPT_ROUNDS = 12
#: scrypt cost for password-derived key encryption keys (SECURITY-MODEL key hierarchy 3).
PRODUCTION_SCRYPT_LOG2_N = 17

DEVELOPMENT_STAFF_NETWORKS = "127.0.0.0/8,::1/128"

#: A century: a longer period is a typo, and timedelta arithmetic stays far from its limits.
MAX_RETENTION_DAYS = 36_500
#: Rows locked by one retention transaction at most (they stay locked until it commits).
MAX_RETENTION_BATCH = 20_000
#: Audit chain heads that exist (migration 0015; ``medchat.audit.heads.MAX_CHAINS``).
AUDIT_MAX_CHAINS = 64
#: Chains a PostgreSQL deployment appends to when ``MEDCHAT_AUDIT_CHAINS`` is 0.
AUDIT_DEFAULT_CHAINS = 16
#: Each slot may hold scrypt's 128 MiB: more than this per process is a typo.
MAX_PASSWORD_WORK_SLOTS = 64
#: Pillow's own decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``, left at its default):
#: it warns above it and refuses above twice it, a second net under ``max_image_pixels``, which
#: may therefore not be set higher.
PILLOW_MAX_IMAGE_PIXELS = 89_478_485


def _parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigurationError(f"expected a boolean, got {value!r}")


def _parse_int(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError as exc:
        raise ConfigurationError(f"MEDCHAT_{name.upper()}: expected an integer") from exc


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment, already parsed and checked."""

    env: str = "development"
    database_url: str = "sqlite:///var/medchat.sqlite3"
    key_dir: Path = Path("var/keys")
    staff_networks: tuple[IPNetwork, ...] = field(
        default_factory=lambda: parse_networks(DEVELOPMENT_STAFF_NETWORKS)
    )
    #: Reverse proxies between the client and gunicorn whose ``X-Forwarded-For`` hop is taken
    #: (1 behind one nginx); each hop only from an address in ``trusted_proxy_networks``.
    trusted_proxies: int = 0
    #: CIDRs the reverse proxies connect from. ``X-Forwarded-For`` is believed from these
    #: addresses only, never from a hop count alone (``access_control.networks``).
    trusted_proxy_networks: tuple[IPNetwork, ...] = ()
    ratelimit_storage_uri: str = "memory://"
    ratelimit_key_prefix: str = "medchat"
    cookie_secure: bool = False
    #: Live conversations are destroyed this many days after the question (``created_at``).
    retention_days: int = 730
    #: Sealed archive records keep their content this many days after ``sealed_at``.
    archive_retention_days: int = 3650
    #: An expired live conversation is sealed into the archive (reason ``retention``) instead
    #: of destroyed. Off by default: the product promise is destruction after two years;
    #: deployments with a legal duty to keep medical exchanges longer turn it on.
    retention_seal_expired: bool = False
    #: Conversations (or archive records) handled per retention transaction.
    retention_batch: int = 500
    #: The audit log's network addresses are erased this many days after the entry (the
    #: retention job; ``medchat.audit.addresses``): long enough to investigate abuse.
    audit_address_days: int = 180
    mail_url: str = "file://var/mail"
    #: How long a mailed password-reset or e-mail-confirmation token works (SECURITY-MODEL
    #: "Authentication"; ``services/email_change``).
    password_reset_minutes: int = 30
    #: Audit chains commits append to, each under its own head lock (``medchat.audit.heads``);
    #: 0: 16 on PostgreSQL, 1 on SQLite (whose writers take one database lock anyway).
    audit_chains: int = 0
    #: Re-wrap requests a clinician request drains before it commits (key hierarchy 7).
    rewrap_batch: int = 20
    #: How long a process remembers a conversation key a session opened, sealed to that
    #: session (``access_control.unwrap_memo``); 0 turns the memo off.
    unwrap_memo_seconds: int = 300
    registration_open: bool = True
    cors_origins: tuple[str, ...] = ()
    bcrypt_rounds: int = PRODUCTION_BCRYPT_ROUNDS
    scrypt_log2_n: int = PRODUCTION_SCRYPT_LOG2_N
    #: Password checks and hashes one process runs at once (``access_control.password_work``):
    #: 1 by default, since gunicorn runs about as many workers as cores, each a process with
    #: its own slots; as many more wait, each at most ``password_work_wait_ms``, and the rest
    #: answer 503 at once, so a sign-in flood leaves CPUs and threads to the readers.
    password_work_slots: int = 1
    password_work_wait_ms: int = 1000
    access_token_minutes: int = 15
    member_refresh_days: int = 30
    staff_refresh_hours: int = 12
    enrollment_token_hours: int = 72
    console_idle_minutes: int = 15
    console_absolute_hours: int = 8
    max_attachment_bytes: int = 10 * 1024 * 1024
    #: Images with more pixels are refused before they are decoded (decompression bombs):
    #: 50 MP holds a 48 MP phone photo, and decodes to at most 200 MB (RGBA) while it is
    #: cleaned of its metadata (``medchat.files.metadata``).
    max_image_pixels: int = 50_000_000
    public_base_url: str = "http://127.0.0.1:8000"
    #: The insurer's push service: each notification is POSTed there, signed with
    #: ``notify-webhook.key`` (docs/security.md "Notifications"); empty: no webhook channel.
    notify_webhook_url: str = ""
    #: Hosts (and their subdomains) a Web Push subscription may point at: the browsers' push
    #: services. Anything else is refused, so a member cannot make the server POST to an
    #: address of its choosing (server-side request forgery).
    push_service_hosts: tuple[str, ...] = (
        "fcm.googleapis.com",
        "updates.push.services.mozilla.com",
        "push.apple.com",
        "notify.windows.com",
    )
    #: The VAPID ``sub`` claim (RFC 8292): how a push service reaches the operator.
    notify_vapid_subject: str = "mailto:no-reply@medchat.invalid"
    #: ``physician:<fingerprint>,archive:<fingerprint>``; empty: the pin file in the key dir.
    role_key_pins: str = ""
    #: Ed25519 public key (64 hex digits) of ``archive-signing.key``: the ledger and exported
    #: bundles verify against this pin, never against a key read from the database. Required
    #: in production (``medchat archive public-key`` prints it); derived in development.
    archive_signing_public_key: str = ""
    #: How long an approved compliance retrieval stays open to its requester.
    retrieval_hours: int = 24
    #: Hours from a role key's rotation becoming due (a holder lost it) to the refusal of
    #: every new seal to it (``medchat.keys.rotation_deadline``); warned meanwhile.
    rotation_deadline_hours: int = 72
    #: The version of the consent text members agree to now (``medchat.services.consent_texts``):
    #: a member whose grant names another version is asked again before a new question.
    consent_version: str = "2026-01"
    #: A folder of consent texts (``health_messaging/<version>.txt``) replacing the ones the
    #: package ships; empty: the shipped texts.
    consent_text_dir: str = ""
    #: How long a clinician's claim on a question holds before it returns to the queue
    #: (``medchat.services.claims``); answering renews it.
    claim_minutes: int = 30
    #: When doctors answer (``parse_service_hours``), in ``service_timezone``; served by
    #: ``GET /api/v1/service`` with the expected response time, in hours of waiting after
    #: which an open question is flagged in the queue and counted in the metrics.
    service_hours: str = "mon-fri 08:00-18:00"
    service_timezone: str = "Europe/Paris"
    response_target_hours: int = 24

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def access_token_ttl(self) -> timedelta:
        return timedelta(minutes=self.access_token_minutes)

    @property
    def enrollment_token_ttl(self) -> timedelta:
        return timedelta(hours=self.enrollment_token_hours)

    @property
    def password_reset_ttl(self) -> timedelta:
        return timedelta(minutes=self.password_reset_minutes)

    @property
    def retrieval_ttl(self) -> timedelta:
        return timedelta(hours=self.retrieval_hours)

    @property
    def console_idle(self) -> timedelta:
        return timedelta(minutes=self.console_idle_minutes)

    @property
    def console_absolute(self) -> timedelta:
        return timedelta(hours=self.console_absolute_hours)

    @property
    def rotation_deadline(self) -> timedelta:
        return timedelta(hours=self.rotation_deadline_hours)

    @property
    def claim_ttl(self) -> timedelta:
        return timedelta(minutes=self.claim_minutes)

    @property
    def response_target(self) -> timedelta:
        return timedelta(hours=self.response_target_hours)

    @property
    def service_periods(self) -> tuple[ServicePeriod, ...]:
        return parse_service_hours(self.service_hours)

    def refresh_token_ttl(self, staff: bool) -> timedelta:
        """Members stay signed in on their phone for weeks; staff for one working day."""
        if staff:
            return timedelta(hours=self.staff_refresh_hours)
        return timedelta(days=self.member_refresh_days)

    @property
    def audit_chain_count(self) -> int:
        """The chains commits append to: the setting, or 16 on PostgreSQL and 1 on SQLite."""
        if self.audit_chains:
            return self.audit_chains
        return AUDIT_DEFAULT_CHAINS if self.database_url.startswith("postgresql") else 1

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
    ) -> Settings:
        """Build settings from ``MEDCHAT_*`` variables, then apply explicit overrides.

        Overrides take already-typed values (tests pass ``bcrypt_rounds=4``); environment
        values are strings parsed per field. Unknown override names raise, so a typo in a
        test config cannot silently keep a production default.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for name, spec in fields.items():
            raw = environ.get(f"MEDCHAT_{name.upper()}")
            if raw is None:
                continue
            values[name] = _parse_field(name, spec.type, raw)
        for name, value in (overrides or {}).items():
            if name not in fields:
                raise ConfigurationError(f"unknown setting {name!r}")
            if isinstance(value, str) and fields[name].type not in ("str",):
                value = _parse_field(name, fields[name].type, value)
            values[name] = value
        given = frozenset(values)
        if values.get("env", cls.env) == "production":
            values.setdefault("cookie_secure", True)
        settings = cls(**values)
        settings.check(given)
        return settings

    def check(self, given: frozenset[str] | None = None) -> None:
        """Refuse settings that are unsafe for the environment they run in.

        ``given``: the names set explicitly (environment or overrides); production refuses to
        run on the development default of the staff networks. ``None``: all of them were.
        """
        if self.env not in {"development", "production"}:
            raise ConfigurationError("MEDCHAT_ENV must be 'development' or 'production'")
        if self.trusted_proxies < 0:
            raise ConfigurationError("MEDCHAT_TRUSTED_PROXIES must be 0 or more")
        if self.trusted_proxies and not self.trusted_proxy_networks:
            raise ConfigurationError(
                "MEDCHAT_TRUSTED_PROXIES needs MEDCHAT_TRUSTED_PROXY_NETWORKS: X-Forwarded-For "
                "is believed only from the proxies' own addresses, never from a hop count alone"
            )
        if self.trusted_proxy_networks and not self.trusted_proxies:
            raise ConfigurationError(
                "MEDCHAT_TRUSTED_PROXY_NETWORKS needs MEDCHAT_TRUSTED_PROXIES: the number of "
                "proxies in front (1 behind one nginx)"
            )
        if not 0 <= self.unwrap_memo_seconds <= 900:
            raise ConfigurationError("MEDCHAT_UNWRAP_MEMO_SECONDS must be 0 to 900")
        if not 0 <= self.audit_chains <= AUDIT_MAX_CHAINS:
            raise ConfigurationError(
                f"MEDCHAT_AUDIT_CHAINS must be 0 (automatic) to {AUDIT_MAX_CHAINS}"
            )
        if self.rewrap_batch < 0:
            raise ConfigurationError("MEDCHAT_REWRAP_BATCH must be 0 or more (0: workers only)")
        if not 1 <= self.password_reset_minutes <= 24 * 60:
            raise ConfigurationError("MEDCHAT_PASSWORD_RESET_MINUTES must be 1 to 1440")
        if not 1 <= self.retrieval_hours <= 24 * 30:
            raise ConfigurationError("MEDCHAT_RETRIEVAL_HOURS must be 1 to 720")
        if not 1 <= self.rotation_deadline_hours <= 24 * 30:
            raise ConfigurationError("MEDCHAT_ROTATION_DEADLINE_HOURS must be 1 to 720")
        if not 1 <= self.claim_minutes <= 24 * 60:
            raise ConfigurationError("MEDCHAT_CLAIM_MINUTES must be 1 to 1440")
        if not 1 <= self.response_target_hours <= 24 * 14:
            raise ConfigurationError("MEDCHAT_RESPONSE_TARGET_HOURS must be 1 to 336")
        try:
            parse_service_hours(self.service_hours)
        except ValueError as error:
            raise ConfigurationError(f"MEDCHAT_SERVICE_HOURS: {error}") from None
        try:
            ZoneInfo(self.service_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigurationError(
                "MEDCHAT_SERVICE_TIMEZONE must be an IANA time zone (Europe/Paris)"
            ) from None
        for name in ("retention_days", "archive_retention_days", "audit_address_days"):
            if not 1 <= getattr(self, name) <= MAX_RETENTION_DAYS:
                raise ConfigurationError(
                    f"MEDCHAT_{name.upper()} must be 1 to {MAX_RETENTION_DAYS} (days)"
                )
        if not 1 <= self.password_work_slots <= MAX_PASSWORD_WORK_SLOTS:
            raise ConfigurationError(
                f"MEDCHAT_PASSWORD_WORK_SLOTS must be 1 to {MAX_PASSWORD_WORK_SLOTS}"
            )
        if not 0 <= self.password_work_wait_ms <= 30_000:
            raise ConfigurationError("MEDCHAT_PASSWORD_WORK_WAIT_MS must be 0 to 30000")
        if not 1 <= self.retention_batch <= MAX_RETENTION_BATCH:
            raise ConfigurationError(f"MEDCHAT_RETENTION_BATCH must be 1 to {MAX_RETENTION_BATCH}")
        if not 1 <= self.max_image_pixels <= PILLOW_MAX_IMAGE_PIXELS:
            raise ConfigurationError(
                f"MEDCHAT_MAX_IMAGE_PIXELS must be 1 to {PILLOW_MAX_IMAGE_PIXELS} (Pillow's limit)"
            )
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}", self.consent_version):
            raise ConfigurationError(
                "MEDCHAT_CONSENT_VERSION must be 1 to 32 letters, digits, '.', '_' or '-'"
            )
        pin = self.archive_signing_public_key
        if pin and (len(pin) != 64 or any(c not in "0123456789abcdefABCDEF" for c in pin)):
            raise ConfigurationError("MEDCHAT_ARCHIVE_SIGNING_PUBLIC_KEY must be 64 hex digits")
        if self.notify_webhook_url and not self.notify_webhook_url.startswith(
            ("https://", "http://")
        ):
            raise ConfigurationError("MEDCHAT_NOTIFY_WEBHOOK_URL must be an http(s) URL")
        if not self.is_production:
            return
        problems = []
        if self.bcrypt_rounds < PRODUCTION_BCRYPT_ROUNDS:
            problems.append(f"bcrypt cost {self.bcrypt_rounds} < {PRODUCTION_BCRYPT_ROUNDS}")
        if self.scrypt_log2_n < PRODUCTION_SCRYPT_LOG2_N:
            problems.append(f"scrypt log2(N) {self.scrypt_log2_n} < {PRODUCTION_SCRYPT_LOG2_N}")
        if not self.cookie_secure:
            problems.append("cookies must be Secure (MEDCHAT_COOKIE_SECURE)")
        if self.database_url.startswith("sqlite"):
            problems.append("SQLite is for development; set MEDCHAT_DATABASE_URL to PostgreSQL")
        if self.notify_webhook_url.startswith("http://"):
            problems.append("MEDCHAT_NOTIFY_WEBHOOK_URL must use https")
        problems += self._staff_network_problems(given)
        if problems:
            raise ConfigurationError("refusing to start in production: " + "; ".join(problems))

    def _staff_network_problems(self, given: frozenset[str] | None) -> list[str]:
        """Production names its staff networks itself, and a loopback-only list needs the
        proxy settings: behind an nginx on the same host every request comes from 127.0.0.1,
        so without them the console and the staff APIs would answer the whole Internet."""
        if given is not None and "staff_networks" not in given:
            return ["MEDCHAT_STAFF_NETWORKS is not set (the loopback default is for development)"]
        if not self.staff_networks:
            return ["MEDCHAT_STAFF_NETWORKS is empty: staff could never sign in"]
        if is_loopback_only(self.staff_networks) and not self.trusted_proxy_networks:
            return [
                "MEDCHAT_STAFF_NETWORKS is loopback only: behind a proxy on this host every "
                "request would come from it; set MEDCHAT_TRUSTED_PROXY_NETWORKS and "
                "MEDCHAT_TRUSTED_PROXIES"
            ]
        return []


def _parse_field(name: str, type_name: Any, raw: str) -> Any:
    type_name = str(type_name)
    if type_name == "int":
        return _parse_int(name, raw)
    if type_name == "bool":
        try:
            return _parse_bool(raw)
        except ConfigurationError as exc:
            raise ConfigurationError(f"MEDCHAT_{name.upper()}: {exc}") from None
    if type_name == "Path":
        return Path(raw)
    if "IPNetwork" in type_name:
        return parse_networks(raw, name)
    if type_name.startswith("tuple[str"):
        return tuple(p.strip() for p in raw.split(",") if p.strip())
    return raw
