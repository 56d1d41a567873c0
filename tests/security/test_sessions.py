"""Sessions carry the secret, the database does not (SECURITY-MODEL key hierarchy 5 and 11).

At sign-in the opened private keys are sealed under a key derived from the token and the
session-keyring server key, beside the token's SHA-256. Only the client holds the token: after
logout the row is gone, and even a copy of the blob taken before opens with nothing but that
token (and the server key, which is never in the database: ``test_session_keyrings``).
Revocation and disabling end an open session at once; a refresh re-seals the keys under the
new tokens and wipes the spent one's copy. Admins hold no keys at all, so no admin session can
ever grant one.
"""

from __future__ import annotations

import base64
import hashlib
import uuid

import pytest
from sqlalchemy import select

from access_control import crypto
from access_control.keyring import Keyring, _session_key, open_keyring
from access_control.permissions import ROLE_PERMISSIONS
from access_control.roles import Role
from medchat.errors import InvalidToken, RoleKeyRequired
from medchat.identity.principal import Principal
from medchat.identity.tokens import token_row as find_token_row
from medchat.models import AuthToken, KeyRole, RoleKeyGrant, TokenKind
from medchat.services.authentication import AuthenticationService
from medchat.services.context import ServiceContext
from medchat.services.role_keys import RoleKeyService
from medchat.web.guard import declared_permission
from tests.support.accounts import bearer, init_role_keys, login, make_member, make_staff
from tests.support.dump import database_dump
from tests.support.leaks import found_in
from tests.support.sessions import principal_for, sign_in

UNKNOWN = uuid.UUID(int=1)


@pytest.fixture
def holders(runtime: ServiceContext):
    clinician = make_staff(runtime, Role.CLINICIAN)
    compliance = make_staff(runtime, Role.COMPLIANCE)
    init_role_keys(runtime, clinician, compliance)
    return clinician, compliance


def token_row(runtime: ServiceContext, token: str) -> AuthToken | None:
    with runtime.database.transaction() as session:
        return session.scalar(
            select(AuthToken).where(AuthToken.token_hash == crypto.token_hash(token))
        )


def seeds(keyring: Keyring) -> set[bytes]:
    """Every private seed a keyring holds (personal and role keys)."""
    held = {held.key.private_bytes_for_storage() for held in keyring.roles}
    if keyring.personal is not None:
        held.add(keyring.personal.private_bytes_for_storage())
    return held


def probe_grant(client, headers) -> int:
    """A harmless signed-in request for a clinician: a grant to nobody (404 when it works)."""
    return client.post(f"/api/v1/clinician/colleagues/{UNKNOWN}/grant", headers=headers).status_code


def test_after_logout_the_row_is_gone_and_only_the_token_opens_a_copy_of_its_keys(runtime, holders):
    clinician, _ = holders
    signed = sign_in(runtime, clinician)
    token = signed.tokens.access_token
    row = token_row(runtime, token)
    copy, row_id, account_id = row.sealed_keys, row.id, row.account_id
    held = seeds(signed.principal.keyring)
    assert len(held) == 2  # personal and physician role key

    with runtime.database.transaction() as session:
        AuthenticationService(session, runtime).logout(signed.principal.token)
    assert token_row(runtime, token) is None
    assert token_row(runtime, signed.tokens.refresh_token) is None
    with pytest.raises(InvalidToken):
        principal_for(runtime, token)

    secret = runtime.keys.session_keyring
    # The copy opens with the token, so the secret was in the token and only there...
    assert seeds(open_keyring(copy, token, row_id, account_id, secret)) == held
    # ...and with nothing else: not the family's other token, not what the row stored, not a
    # server key, not the token bound to another row or account, not a token one letter off.
    others = {
        "refresh token": signed.tokens.refresh_token,
        "token hash": row.token_hash.hex(),
        "one letter off": token[:-1] + ("A" if token[-1] != "A" else "B"),
    }
    for name, key in vars(runtime.keys).items():
        if isinstance(key, bytes):
            others[f"server key {name}"] = "mca_" + base64.urlsafe_b64encode(key).decode()
    for name, other in others.items():
        with pytest.raises(crypto.DecryptionFailed):
            open_keyring(copy, other, row_id, account_id, secret)
            pytest.fail(f"the {name} opened the session keyring")
    with pytest.raises(crypto.DecryptionFailed):
        open_keyring(copy, token, uuid.uuid4(), account_id, secret)
    with pytest.raises(crypto.DecryptionFailed):
        open_keyring(copy, token, row_id, uuid.uuid4(), secret)


def test_logout_over_http_ends_the_session_at_once(client, runtime):
    tokens = login(client, runtime, make_member(runtime))
    assert client.get("/api/v1/me", headers=bearer(tokens)).status_code == 200
    assert client.post("/api/v1/auth/logout", headers=bearer(tokens)).status_code == 204
    response = client.get("/api/v1/me", headers=bearer(tokens))
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "invalid_token"
    refreshed = client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 401
    assert token_row(runtime, tokens["access_token"]) is None


def test_a_token_row_holds_the_tokens_sha256_and_the_sealed_keys_only(runtime, holders):
    clinician, _ = holders
    signed = sign_in(runtime, clinician)
    held = seeds(signed.principal.keyring)
    tokens = (signed.tokens.access_token, signed.tokens.refresh_token)
    for token in tokens:
        row = token_row(runtime, token)
        assert row.token_hash == hashlib.sha256(token.encode()).digest()
        opened = open_keyring(
            row.sealed_keys, token, row.id, row.account_id, runtime.keys.session_keyring
        )
        assert seeds(opened) == held
        binary = {
            column.name: getattr(row, column.key)
            for column in AuthToken.__table__.columns
            if isinstance(getattr(row, column.key), bytes)
        }
        # ``row_tag`` is an HMAC under a server key over the row's deciding columns: it opens
        # nothing and holds nothing secret (``medchat.storage.row_integrity``).
        assert set(binary) == {"token_hash", "sealed_keys", "row_tag"}
    secrets = {f"seed {i}": seed for i, seed in enumerate(held)}
    for token in tokens:
        secrets[f"token {token[:4]}"] = token
        secrets[f"session key {token[:4]}"] = _session_key(token, runtime.keys.session_keyring)
        # The token's 32 random bytes themselves, as the client's base64url decodes them.
        secrets[f"token bytes {token[:4]}"] = base64.urlsafe_b64decode(token[4:] + "=")
    assert found_in(database_dump(runtime.database.engine), secrets) == []


def test_revoking_a_clinicians_grant_ends_their_open_session_at_once(client, runtime, holders):
    clinician, _ = holders
    colleague = make_staff(runtime, Role.CLINICIAN)
    holder = sign_in(runtime, clinician).principal
    with runtime.database.transaction() as session:
        RoleKeyService(session, runtime).grant(holder, KeyRole.PHYSICIAN, colleague.id)
    tokens = login(client, runtime, colleague)
    assert probe_grant(client, bearer(tokens)) == 404  # signed in, and holding the key

    with runtime.database.transaction() as session:
        RoleKeyService(session, runtime).revoke(
            holder,
            KeyRole.PHYSICIAN,
            colleague.id,
            password=clinician.password,
            address="127.0.0.1",
        )
    response = client.post(f"/api/v1/clinician/colleagues/{UNKNOWN}/grant", headers=bearer(tokens))
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "invalid_token"
    refreshed = client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 401
    assert token_row(runtime, tokens["access_token"]) is None
    assert not sign_in(runtime, colleague).principal.keyring.holds_role(KeyRole.PHYSICIAN)


def test_disabling_a_clinician_ends_their_open_session_at_once(client, runtime, holders):
    clinician, _ = holders
    # A colleague holds the key too: the last holder cannot be disabled (test_key_holders).
    colleague = make_staff(runtime, Role.CLINICIAN)
    with runtime.database.transaction() as session:
        RoleKeyService(session, runtime).grant(
            sign_in(runtime, clinician).principal, KeyRole.PHYSICIAN, colleague.id
        )
    admin = bearer(login(client, runtime, make_staff(runtime, Role.ADMIN)))
    tokens = login(client, runtime, clinician)
    assert probe_grant(client, bearer(tokens)) == 404

    disabled = client.post(f"/api/v1/admin/accounts/{clinician.id}/disable", headers=admin)
    assert disabled.status_code == 204
    assert probe_grant(client, bearer(tokens)) == 401
    refreshed = client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 401
    with runtime.database.transaction() as session:
        assert (
            session.scalars(select(AuthToken).where(AuthToken.account_id == clinician.id)).all()
            == []
        )
        assert (
            session.scalars(
                select(RoleKeyGrant).where(RoleKeyGrant.account_id == clinician.id)
            ).all()
            == []
        )


def test_refresh_reseals_the_keys_under_the_new_tokens_and_wipes_the_spent_copy(runtime, holders):
    clinician, _ = holders
    signed = sign_in(runtime, clinician)
    held = seeds(signed.principal.keyring)
    old_access, old_refresh = signed.tokens.access_token, signed.tokens.refresh_token
    spent_id = token_row(runtime, old_refresh).id

    with runtime.database.transaction() as session:
        renewed = AuthenticationService(session, runtime).refresh(old_refresh, address=None).tokens

    with runtime.database.transaction() as session:
        spent = session.get(AuthToken, spent_id)
    assert spent.used_at is not None
    assert spent.sealed_keys is None
    assert token_row(runtime, old_access) is None
    with pytest.raises(InvalidToken):
        principal_for(runtime, old_access)
    for token in (renewed.access_token, renewed.refresh_token):
        row = token_row(runtime, token)
        assert row.family_id == spent.family_id
        secret = runtime.keys.session_keyring
        assert seeds(open_keyring(row.sealed_keys, token, row.id, row.account_id, secret)) == held
        for old in (old_access, old_refresh):
            with pytest.raises(crypto.DecryptionFailed):
                open_keyring(row.sealed_keys, old, row.id, row.account_id, secret)
    principal = principal_for(runtime, renewed.access_token)
    assert principal.keyring.holds_role(KeyRole.PHYSICIAN)
    assert seeds(principal.keyring) == held


def test_an_admin_session_carries_no_keys(runtime):
    admin = make_staff(runtime, Role.ADMIN)
    signed = sign_in(runtime, admin)
    for token in (signed.tokens.access_token, signed.tokens.refresh_token):
        assert token_row(runtime, token).sealed_keys is None
    keyring = signed.principal.keyring
    assert keyring.personal is None and keyring.roles == ()
    with runtime.database.transaction() as session:
        assert runtime.custody(session).personal_key(admin.id) is None


def test_an_admin_can_never_grant_a_role_key(app, client, runtime, holders):
    admin = make_staff(runtime, Role.ADMIN)
    newcomer = make_staff(runtime, Role.CLINICIAN)
    officer = make_staff(runtime, Role.COMPLIANCE)
    # No route an admin may call grants: every grant route needs a holder's permission.
    grant_rules = [rule for rule in app.url_map.iter_rules() if rule.rule.endswith("/grant")]
    surfaces = {rule.rule.split("/colleagues/")[0].rsplit("/", 1)[-1] for rule in grant_rules}
    assert surfaces == {"clinician", "compliance", "console"}
    for rule in grant_rules:
        permission = declared_permission(app.view_functions[rule.endpoint])
        assert permission not in ROLE_PERMISSIONS[Role.ADMIN]
    headers = bearer(login(client, runtime, admin))
    for path, target in (("clinician", newcomer), ("compliance", officer)):
        response = client.post(f"/api/v1/{path}/colleagues/{target.id}/grant", headers=headers)
        assert response.status_code == 403
        assert response.get_json()["error"]["code"] == "forbidden"
    # Nor the service, called directly with an admin's principal: there is no key to hand on.
    principal: Principal = sign_in(runtime, admin).principal
    for key_role, target in ((KeyRole.PHYSICIAN, newcomer), (KeyRole.ARCHIVE, officer)):
        with pytest.raises(RoleKeyRequired), runtime.database.transaction() as session:
            RoleKeyService(session, runtime).grant(principal, key_role, target.id)
        with pytest.raises(RoleKeyRequired), runtime.database.transaction() as session:
            RoleKeyService(session, runtime).revoke(
                principal, key_role, target.id, password=admin.password, address="127.0.0.1"
            )
    with runtime.database.transaction() as session:
        grantees = set(session.scalars(select(RoleKeyGrant.account_id)))
    assert grantees.isdisjoint({newcomer.id, officer.id, admin.id})


def test_token_row_finds_only_the_presented_token_of_the_asked_kind(runtime):
    """The one lookup of a presented token (console sessions use it directly): another
    token's row is never the answer, and a token of another kind is unknown. A pending console
    token looked up as a full session would skip the second factor. Kills the mutants of
    ``token_row`` that drop its hash filter (x_token_row__mutmut_5: any token of the kind
    opens the one live row) or its kind filter (x_token_row__mutmut_6)."""
    member = make_member(runtime)
    signed = sign_in(runtime, member)
    access, refresh = signed.tokens.access_token, signed.tokens.refresh_token
    with runtime.database.transaction() as session:
        record, account = find_token_row(session, access, TokenKind.ACCESS)
        assert (record.kind, account.id) == (TokenKind.ACCESS, member.id)
        assert record.token_hash == crypto.token_hash(access)
        with pytest.raises(InvalidToken):
            find_token_row(session, "mca_" + "A" * 43, TokenKind.ACCESS)
        for kind in (TokenKind.REFRESH, TokenKind.CONSOLE, TokenKind.CONSOLE_PENDING):
            with pytest.raises(InvalidToken):
                find_token_row(session, access, kind)
        assert find_token_row(session, refresh, TokenKind.REFRESH)[0].kind == TokenKind.REFRESH
