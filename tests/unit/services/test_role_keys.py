"""Role keys: bootstrap, pins, grants, revocation (SECURITY-MODEL 4, 6, 9, 11)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from access_control.roles import Role
from medchat.errors import Conflict, KeyIntegrityFailure, NotFound, RoleKeyRequired
from medchat.identity.tokens import TokenStore
from medchat.models import AuthToken, KeyRole, RoleKey, RoleKeyGrant
from medchat.services.authentication import AuthenticationService
from medchat.services.role_keys import RoleKeyService
from tests.support.accounts import code_for, init_role_keys, make_staff


@pytest.fixture
def holders(runtime):
    clinician = make_staff(runtime, Role.CLINICIAN)
    compliance = make_staff(runtime, Role.COMPLIANCE)
    init_role_keys(runtime, clinician, compliance)
    return clinician, compliance


def _sign_in(runtime, person):
    """A principal-like sign-in through the real service: keys opened with the password."""
    from medchat.identity.principal import Principal

    runtime.clock.advance(seconds=30)
    with runtime.database.transaction() as session:
        signed = AuthenticationService(session, runtime).login(
            person.email, person.password, code_for(person, runtime), address="127.0.0.1"
        )
    with runtime.database.transaction() as session:
        record, account = TokenStore(session, runtime.clock.now()).authenticate(
            signed.tokens.access_token, "access"
        )
        principal = Principal(
            account,
            record,
            signed.tokens.access_token,
            keyring_secret=runtime.keys.session_keyring,
        )
        principal.keyring  # noqa: B018  (opened while the row is loaded)
    return principal


def test_init_creates_pinned_role_keys_sealed_to_their_first_holders(runtime, holders):
    clinician, compliance = holders
    pins = runtime.pins.current()
    with runtime.database.transaction() as session:
        keys = {k.role: k for k in session.scalars(select(RoleKey))}
        grants = {(g.role_key_id, g.account_id) for g in session.scalars(select(RoleKeyGrant))}
    assert set(keys) == {"physician", "archive"}
    assert keys["physician"].fingerprint in pins["physician"]
    assert keys["archive"].fingerprint in pins["archive"]
    assert grants == {(keys["physician"].id, clinician.id), (keys["archive"].id, compliance.id)}
    assert _sign_in(runtime, clinician).keyring.holds_role(KeyRole.PHYSICIAN)
    assert not _sign_in(runtime, clinician).keyring.holds_role(KeyRole.ARCHIVE)


def test_init_refuses_when_keys_exist(runtime, holders):
    clinician, compliance = holders
    with pytest.raises(Conflict), runtime.database.transaction() as session:
        RoleKeyService(session, runtime).initialise(clinician.email, compliance.email)


def test_init_needs_enrolled_holders_of_the_right_roles(runtime):
    admin = make_staff(runtime, Role.ADMIN)
    compliance = make_staff(runtime, Role.COMPLIANCE)
    with pytest.raises(NotFound), runtime.database.transaction() as session:
        RoleKeyService(session, runtime).initialise(admin.email, compliance.email)
    with runtime.database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(RoleKey)) == 0


def test_a_holder_grants_a_colleague_who_then_holds_the_key(runtime, holders):
    clinician, _ = holders
    colleague = make_staff(runtime, Role.CLINICIAN)
    assert not _sign_in(runtime, colleague).keyring.holds_role(KeyRole.PHYSICIAN)
    actor = _sign_in(runtime, clinician)
    with runtime.database.transaction() as session:
        granted = RoleKeyService(session, runtime).grant(actor, KeyRole.PHYSICIAN, colleague.id)
    assert len(granted.fingerprint.replace(" ", "")) == 32
    assert _sign_in(runtime, colleague).keyring.holds_role(KeyRole.PHYSICIAN)


def test_without_the_key_in_session_nobody_can_grant(runtime, holders):
    colleague = make_staff(runtime, Role.CLINICIAN)
    other = make_staff(runtime, Role.CLINICIAN)
    actor = _sign_in(runtime, colleague)
    with pytest.raises(RoleKeyRequired), runtime.database.transaction() as session:
        RoleKeyService(session, runtime).grant(actor, KeyRole.PHYSICIAN, other.id)


def test_grants_go_only_to_colleagues_of_the_holding_role(runtime, holders):
    clinician, compliance = holders
    actor = _sign_in(runtime, clinician)
    admin = make_staff(runtime, Role.ADMIN)
    for target in (compliance.id, admin.id):
        with pytest.raises(NotFound), runtime.database.transaction() as session:
            RoleKeyService(session, runtime).grant(actor, KeyRole.PHYSICIAN, target)


def test_an_unpinned_role_key_is_refused(runtime, holders):
    clinician, _ = holders
    colleague = make_staff(runtime, Role.CLINICIAN)
    actor = _sign_in(runtime, clinician)
    with runtime.database.transaction() as session:
        physician = session.scalar(select(RoleKey).where(RoleKey.role == "physician"))
    runtime.pins.retire("physician", [physician.fingerprint])
    with pytest.raises(KeyIntegrityFailure), runtime.database.transaction() as session:
        RoleKeyService(session, runtime).grant(actor, KeyRole.PHYSICIAN, colleague.id)


def test_revoking_a_grant_ends_the_colleagues_sessions_at_once(runtime, holders):
    clinician, _ = holders
    colleague = make_staff(runtime, Role.CLINICIAN)
    actor = _sign_in(runtime, clinician)
    with runtime.database.transaction() as session:
        RoleKeyService(session, runtime).grant(actor, KeyRole.PHYSICIAN, colleague.id)
    _sign_in(runtime, colleague)
    with runtime.database.transaction() as session:
        RoleKeyService(session, runtime).revoke(
            actor, KeyRole.PHYSICIAN, colleague.id, password=clinician.password, address="127.0.0.1"
        )
    with runtime.database.transaction() as session:
        assert (
            session.scalar(
                select(func.count())
                .select_from(AuthToken)
                .where(AuthToken.account_id == colleague.id)
            )
            == 0
        )
    assert not _sign_in(runtime, colleague).keyring.holds_role(KeyRole.PHYSICIAN)
