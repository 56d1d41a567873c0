"""Accounts: member self-registration, admin-created staff, enrollment, disabling.

Registration answers the same way whether or not the address is taken and does the same costly
work (bcrypt, a keypair generated and sealed with scrypt), so it cannot be used to learn who is
a member. Staff accounts are created by an admin with a one-time, expiring enrollment token;
the admin never sets or sees a password. Every change is audited without personal data (ids
and roles only).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from access_control import crypto
from access_control.password_kdf import Password
from access_control.passwords import PersonalData, check_strength
from access_control.roles import Role, is_staff
from medchat import audit
from medchat.errors import Conflict, Forbidden, InvalidEnrollmentToken, InvalidMfaCode, NotFound
from medchat.identity import single_use, totp
from medchat.identity.tokens import TokenStore
from medchat.keys.holders import require_another_holder
from medchat.models import Account, AccountStatus, EnrollmentToken, MemberProfile
from medchat.services.context import ServiceContext
from medchat.services.display_names import default_display_name
from medchat.services.rotation_notices import mark_rotation_due

#: ``rotation_reason`` of a role key whose holder's account was disabled.
DISABLED_REASON = "account_disabled"


@dataclass(frozen=True)
class NewMember:
    email: str
    password: str
    first_name: str
    last_name: str
    birth_date: date
    sex: str
    phone: str | None = None
    insurance_number: str | None = None


@dataclass(frozen=True, repr=False)
class EnrollmentStart:
    provisioning_uri: str

    @property
    def qr_svg(self) -> str:
        """The URI as a QR code, drawn when a page or an answer shows it (about 20 ms: not for
        the callers that only need the secret, such as ``medchat demo`` and the tests)."""
        return totp.qr_svg(self.provisioning_uri)


class AccountService:
    def __init__(self, session: Session, runtime: ServiceContext) -> None:
        self.session = session
        self.runtime = runtime
        self.profiles = runtime.profiles

    # -- lookups -------------------------------------------------------------------------

    def find_by_email(self, email: str) -> Account | None:
        return self.session.scalar(
            select(Account).where(Account.email_index == self.profiles.email_index(email))
        )

    def get(self, account_id: uuid.UUID) -> Account:
        account = self.session.get(Account, account_id)
        if account is None:
            raise NotFound
        return account

    def email_of(self, account: Account) -> str:
        return self.profiles.open(account.id, "email", account.email_ciphertext) or ""

    def first_name_of(self, account: Account) -> str:
        return self.profiles.open(account.id, "first_name", account.first_name_ciphertext) or ""

    def last_name_of(self, account: Account) -> str:
        return self.profiles.open(account.id, "last_name", account.last_name_ciphertext) or ""

    def personal_data(self, account: Account) -> PersonalData:
        """What the password policy treats as guessed first for this account (its names,
        e-mail and, for a member, birth date): enrollment, reset and change all ask here."""
        return PersonalData(
            email=self.email_of(account),
            first_name=self.first_name_of(account),
            last_name=self.last_name_of(account),
            birth_date=(
                self.profiles.open_date(
                    account.id, "birth_date", account.profile.birth_date_ciphertext
                )
                if account.profile is not None
                else None
            ),
        )

    # -- creation ------------------------------------------------------------------------

    def _new_account(
        self,
        *,
        role: Role,
        email: str,
        first_name: str,
        last_name: str,
        display_name: str | None,
        status: AccountStatus,
    ) -> Account:
        account_id = uuid.uuid4()
        account = Account(
            id=account_id,
            role=role,
            status=status,
            email_index=self.profiles.email_index(email),
            email_ciphertext=self.profiles.seal(account_id, "email", email.strip()),
            first_name_ciphertext=self.profiles.seal(account_id, "first_name", first_name),
            last_name_ciphertext=self.profiles.seal(account_id, "last_name", last_name),
            display_name=display_name,
            created_at=self.runtime.clock.now(),
        )
        self.session.add(account)
        return account

    def register_member(self, data: NewMember) -> None:
        """Create a member who can log in at once; silently keep an existing account as is."""
        if not self.runtime.settings.registration_open:
            raise Forbidden("Registration is closed.")
        check_strength(
            data.password,
            PersonalData(data.email, data.first_name, data.last_name, data.birth_date),
        )
        chosen = Password(data.password)  # one scrypt run for the hash and the sealed key
        # Hashed before the lookup, for a taken address too: no connection is held while the
        # hash runs (the lookup would have opened the transaction), and a full password work
        # gate answers 503 before any query, as for a sign-in.
        password_hash = self.runtime.hasher.hash(chosen)
        if self.find_by_email(data.email) is not None:
            # The rest of the new-address branch's work, kept nowhere: a keypair, sealed.
            self.runtime.custody(self.session).spend_personal_key_work(chosen)
            audit.record(self.session, "account.register", outcome="duplicate")
            return
        account = self._new_account(
            role=Role.MEMBER,
            email=data.email,
            first_name=data.first_name,
            last_name=data.last_name,
            display_name=None,
            status=AccountStatus.ACTIVE,
        )
        account.password_hash = password_hash
        account.password_changed_at = account.created_at
        self.session.flush()
        self.runtime.custody(self.session).create_personal_key(account.id, chosen)
        account.profile = MemberProfile(
            account_id=account.id,
            birth_date_ciphertext=self.profiles.seal_date(
                account.id, "birth_date", data.birth_date
            ),
            sex_ciphertext=self.profiles.seal(account.id, "sex", data.sex),
            phone_ciphertext=self.profiles.seal(account.id, "phone", data.phone),
            insurance_number_ciphertext=self.profiles.seal(
                account.id, "insurance_number", data.insurance_number
            ),
        )
        self.session.flush()
        audit.record(
            self.session,
            "account.register",
            target_type="account",
            target_id=account.id,
            subject_id=account.id,
            details={"role": Role.MEMBER},
        )

    def create_staff(
        self,
        *,
        email: str,
        role: Role,
        first_name: str,
        last_name: str,
        display_name: str | None = None,
    ) -> tuple[Account, str]:
        """Create a pending staff account and its one-time enrollment token."""
        if not is_staff(role):
            raise Forbidden("Admins create staff accounts only; members register themselves.")
        if self.find_by_email(email) is not None:
            raise Conflict("An account with this e-mail address exists.")
        account = self._new_account(
            role=role,
            email=email,
            first_name=first_name,
            last_name=last_name,
            display_name=display_name or default_display_name(role, first_name, last_name),
            status=AccountStatus.PENDING,
        )
        self.session.flush()
        token = self.issue_enrollment_token(account)
        audit.record(
            self.session,
            "account.create",
            target_type="account",
            target_id=account.id,
            details={"role": role},
        )
        return account, token

    def create_admin(
        self, *, email: str, first_name: str, last_name: str, additional: bool = False
    ) -> tuple[Account, str]:
        """The bootstrap admin (``medchat create-admin``) and its enrollment token.

        Whoever can run the command on a server can mint admins, so doing it again is never
        silent: with an active or pending admin already there it raises ``Conflict`` unless
        ``additional`` says it is meant, and then it is audited as such with the count of
        admins that were there (``account.create_additional_admin``).
        """
        existing = self.session.scalar(
            select(func.count())
            .select_from(Account)
            .where(
                Account.role == Role.ADMIN,
                Account.status.in_((AccountStatus.ACTIVE, AccountStatus.PENDING)),
            )
        )
        if existing and not additional:
            raise Conflict(
                f"{existing} admin account(s) exist already; "
                "another is created only with --additional (audited)."
            )
        account, token = self.create_staff(
            email=email, role=Role.ADMIN, first_name=first_name, last_name=last_name
        )
        if existing:
            audit.record(
                self.session,
                "account.create_additional_admin",
                target_type="account",
                target_id=account.id,
                details={"role": Role.ADMIN, "existing_admins": existing},
            )
        return account, token

    def issue_enrollment_token(self, account: Account) -> str:
        """A new one-time token; earlier unspent tokens of the account stop working."""
        token = new_enrollment_token()
        self.store_enrollment_token(account.id, token)
        return token

    def store_enrollment_token(self, account_id: uuid.UUID, token: str) -> None:
        single_use.issue(
            self.session,
            EnrollmentToken,
            account_id,
            crypto.token_hash(token),
            now=self.runtime.clock.now(),
            lifetime=self.runtime.settings.enrollment_token_ttl,
        )

    def disable(self, account_id: uuid.UUID) -> list[str]:
        """Disable an account for good and end every one of its sessions at once.

        Returns the roles whose keys it held: their rotation is now due (a database copy
        taken earlier plus this account's password still opens them), and the caller says so.
        Refuses (409 ``last_key_holder``) the last active holder of a role key.
        """
        account = self.get(account_id)
        if account.status == AccountStatus.DELETED:
            raise Conflict("This account was deleted at its owner's request.")
        custody = self.runtime.custody(self.session)
        held = custody.granted_roles(account.id)
        require_another_holder(self.session, custody, account.id, held)
        now = self.runtime.clock.now()
        account.status = AccountStatus.DISABLED
        account.disabled_at = now
        TokenStore(self.session, now).revoke_account(account.id)
        revoked = custody.revoke_grants(account.id)
        for role in held:
            mark_rotation_due(self.session, self.runtime, role, DISABLED_REASON, lost=account.id)
        audit.record(
            self.session,
            "account.disable",
            target_type="account",
            target_id=account.id,
            details={"role": account.role, "grants_revoked": revoked, "rotation_due": held},
        )
        return held

    # -- enrollment ----------------------------------------------------------------------

    def _enrollment(self, token: str) -> tuple[EnrollmentToken, Account]:
        found = single_use.find(self.session, EnrollmentToken, token)
        if found is None:
            raise InvalidEnrollmentToken
        record, account = found
        if not single_use.is_live(record, self.runtime.clock.now()):
            raise InvalidEnrollmentToken
        if account.status == AccountStatus.DISABLED:
            raise InvalidEnrollmentToken
        return record, account

    def begin_enrollment(self, token: str, password: str) -> EnrollmentStart:
        """Set the password and start TOTP enrollment; the token stays valid until confirmed."""
        _record, account = self._enrollment(token)
        person = self.personal_data(account)
        check_strength(password, person)
        chosen = Password(password)  # one scrypt run for the hash and the sealed key
        account.password_hash = self.runtime.hasher.hash(chosen)
        account.password_changed_at = self.runtime.clock.now()
        if holds_keys(account.role):
            # A fresh keypair for every enrollment: a re-enrolled account's old grants and
            # wraps stop opening, and a colleague re-grants the role key. The retired key
            # (its grants were revoked by the reset) is deleted with its old-password blob.
            custody = self.runtime.custody(self.session)
            custody.create_personal_key(account.id, chosen)
            custody.forget_retired(account.id)
        start = self._start_totp(account, person.email)
        audit.record(self.session, "auth.enroll_start", target_type="account", target_id=account.id)
        return start

    def confirm_enrollment(self, token: str, code: str) -> list[str]:
        """Check the first TOTP code, activate the account, spend the token."""
        record, account = self._enrollment(token)
        if account.password_hash is None or account.totp_secret_ciphertext is None:
            raise InvalidEnrollmentToken("Start enrollment with a password first.")
        codes = self._confirm_totp(account, code)
        if not single_use.redeem(self.session, EnrollmentToken, record, self.runtime.clock.now()):
            raise InvalidEnrollmentToken
        account.status = AccountStatus.ACTIVE
        audit.record(
            self.session, "auth.enroll_confirm", target_type="account", target_id=account.id
        )
        return codes

    def start_mfa(self, account: Account) -> EnrollmentStart:
        """Begin TOTP enrollment for a signed-in account that has none yet.

        An account with TOTP keeps it: a stolen access token must not be able to replace the
        second factor (a lost device goes through an admin reset).
        """
        if account.has_totp:
            raise Conflict("Two-factor sign-in is already set up for this account.")
        start = self._start_totp(account, self.email_of(account))
        audit.record(self.session, "auth.mfa_start", target_type="account", target_id=account.id)
        return start

    def confirm_mfa(self, account: Account, code: str, family_id: uuid.UUID) -> list[str]:
        """Turn on TOTP; the confirming session counts as having passed it (it just did)."""
        if account.totp_secret_ciphertext is None:
            raise Conflict("Start two-factor enrollment first.")
        codes = self._confirm_totp(account, code)
        TokenStore(self.session, self.runtime.clock.now()).mark_mfa_verified(family_id)
        audit.record(self.session, "auth.mfa_confirm", target_type="account", target_id=account.id)
        return codes

    def totp_secret(self, account: Account) -> str | None:
        return self.profiles.open(account.id, "totp_secret", account.totp_secret_ciphertext)

    def _start_totp(self, account: Account, email: str) -> EnrollmentStart:
        secret = totp.generate_secret()
        account.totp_secret_ciphertext = self.profiles.seal(account.id, "totp_secret", secret)
        account.totp_confirmed_at = None
        account.totp_last_step = None
        self.session.flush()
        uri = totp.provisioning_uri(secret, email)
        return EnrollmentStart(provisioning_uri=uri)

    def _confirm_totp(self, account: Account, code: str) -> list[str]:
        secret = self.totp_secret(account)
        now = self.runtime.clock.now()
        step = totp.matching_step(secret or "", code, now) if secret else None
        if step is None or not totp.consume_step(self.session, account.id, step):
            raise InvalidMfaCode
        account.totp_confirmed_at = now
        return totp.new_recovery_codes(self.session, account.id)


def holds_keys(role: str) -> bool:
    """Members, clinicians and compliance officers have keypairs; admins never hold keys."""
    return role in (Role.MEMBER, Role.CLINICIAN, Role.COMPLIANCE)


def new_enrollment_token() -> str:
    return "mce_" + crypto.random_token()
