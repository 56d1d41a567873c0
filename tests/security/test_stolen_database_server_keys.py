"""No key the server holds at rest opens anything in a stolen database (SECURITY-MODEL "Key
hierarchy": "a full copy of the database plus the server's configuration reveals no message,
attachment, or key that opens one"); this module covers the server's configuration half.

The database is filled the way the service fills it (``tests/support/stolen_database.py``)
while the test keeps every secret that exists in its memory. Then:

- every key the server holds at rest (each key of ``MEDCHAT_KEY_DIR``, the archive-signing
  seed among them; the pin file holds public fingerprints only) fails to open every content
  ciphertext, every wrap and every password-sealed private key, each of which opens with the
  key it was made for (so the failures are the keys', not the test's). The one envelope a
  server key opens is the archive gate of a live conversation's archive wrap
  (``archive-gate.key``): inside is an HPKE wrap to the archive key, which no server key opens
  either, and which the archive key alone cannot reach through the gate. What the server keys
  do seal is personal data, never content or keys; and no server key confirms a guess of a
  message from the request hash an idempotency record keeps;
- a session keyring needs both halves of its key: its token (which only the client holds) and
  the session-keyring server key. With both it opens; with the token and any other server key
  (or none, as keyrings were sealed before), or with the server key and anything the database
  or the key directory holds in place of the token, it does not.

That the database's bytes hold no content, personal field or secret in clear is
``test_stolen_database.py``.
"""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy import text as text_statement

from access_control import crypto, hybrid_kem
from access_control.key_directory import KEY_NAMES
from access_control.keyring import open_keyring
from access_control.password_kdf import open_with_password
from access_control.pins import PIN_FILE
from medchat.archive.gate import GATED, wrapped_for
from medchat.keys.custody import _PERSONAL_AAD
from medchat.keys.sealing import ContentKey
from medchat.keys.wrap_binding import wrap_purpose
from medchat.models import (
    Account,
    Attachment,
    AuthToken,
    Conversation,
    ConversationKeyWrap,
    Holder,
    KeyRole,
    Message,
    PersonalKey,
    RoleKey,
    RoleKeyGrant,
)
from medchat.services.context import ServiceContext
from tests.support.leaks import found_in, stored_blobs
from tests.support.stolen_database import (
    ATTACHMENT_DATA,
    PERSONAL_DATA,
    REPLY,
    SUBJECT,
    Stolen,
    fill_database,
    fill_over_http,
    require_conversation_api,
    server_keys,
)

#: Columns sealed under the server's profile key: personal data, never content or keys.
PROFILE_COLUMNS = {
    ("accounts", "email_ciphertext"),
    ("accounts", "first_name_ciphertext"),
    ("accounts", "last_name_ciphertext"),
    ("accounts", "totp_secret_ciphertext"),
    ("member_profiles", "birth_date_ciphertext"),
    ("member_profiles", "sex_ciphertext"),
    ("member_profiles", "phone_ciphertext"),
    ("member_profiles", "insurance_number_ciphertext"),
}
#: The gated archive wrap of a live conversation (``medchat.archive.gate``).
GATE_COLUMN = ("conversation_key_wraps", "wrap")
CONTENT_COLUMNS = {
    ("conversations", "subject_ciphertext"),
    ("messages", "body_ciphertext"),
    ("attachments", "filename_ciphertext"),
    ("attachments", "content_type_ciphertext"),
    ("attachments", "data_ciphertext"),
}


def as_text(key: bytes) -> dict[str, str]:
    """The ways a 32-byte key could be typed where a password or a token is expected."""
    b64url = base64.urlsafe_b64encode(key).decode().rstrip("=")
    return {
        "hex": key.hex(),
        "base64": base64.b64encode(key).decode(),
        "base64url": b64url,
        "latin-1": key.decode("latin-1"),
        "as access token": "mca_" + b64url,
        "as refresh token": "mcr_" + b64url,
    }


@pytest.fixture
def stolen(runtime: ServiceContext) -> Stolen:
    return fill_database(runtime)


def _content_ciphertexts(session) -> list[tuple[str, Conversation, bytes, Any]]:
    """(what, conversation, ciphertext, how a ``ContentKey`` opens it) for every ciphertext."""
    conversations = {c.id: c for c in session.scalars(select(Conversation))}
    items: list[tuple[str, Conversation, bytes, Any]] = []
    for conversation in conversations.values():
        if conversation.subject_ciphertext is not None:
            sealed = conversation.subject_ciphertext
            items.append(
                ("subject", conversation, sealed, lambda k, s=sealed: k.open_subject(s).encode())
            )
    for message in session.scalars(select(Message)):
        sealed = message.body_ciphertext
        items.append(
            (
                "body",
                conversations[message.conversation_id],
                sealed,
                lambda k, m=message, s=sealed: k.open_body(m, s).encode(),
            )
        )
    for attachment in session.scalars(select(Attachment)):
        for field_name in ("filename", "content_type", "data"):
            sealed = getattr(attachment, f"{field_name}_ciphertext")
            items.append(
                (
                    field_name,
                    conversations[attachment.conversation_id],
                    sealed,
                    lambda k, a=attachment, f=field_name, s=sealed: k.open_attachment(a, f, s),
                )
            )
    return items


def test_no_server_key_opens_any_content_ciphertext(runtime, stolen):
    keys = server_keys(runtime)
    with runtime.database.transaction() as session:
        items = _content_ciphertexts(session)
    assert sorted(what for what, *_ in items) == sorted(
        ["subject", "body", "body", "body", "body", "filename", "content_type", "data"]
    )
    opened = []
    for _what, conversation, sealed, open_with in items:
        # Control: the DEK opens it in this place, so the AAD below is the right one.
        opened.append(open_with(ContentKey.for_conversation(stolen.dek, conversation)))
        assert crypto.envelope_key_id(sealed) == crypto.key_id(stolen.dek)
        for name, key in keys.items():
            assert crypto.envelope_key_id(sealed) != crypto.key_id(key), name
            with pytest.raises(crypto.DecryptionFailed):
                open_with(ContentKey.for_conversation(key, conversation))
    assert ATTACHMENT_DATA in opened and REPLY.encode() in opened


def test_server_keys_seal_only_personal_fields_never_content_or_keys(runtime, stolen):
    """A census of every bytes value in every table: which key does each envelope name?"""
    keys = server_keys(runtime)
    by_key_id = {crypto.key_id(key): name for name, key in keys.items()}
    # The gate key is derived (HKDF) from archive-gate.key: its envelopes name that key.
    by_key_id[runtime.archive_gate.key_id] = "archive-gate"
    dek_id = crypto.key_id(stolen.dek)
    under_server_key: dict[tuple[str, str], set[str]] = {}
    under_dek: set[tuple[str, str]] = set()
    for table, column, _row, blob in stored_blobs(runtime.database.engine):
        try:
            named = crypto.envelope_key_id(blob)
        except crypto.DecryptionFailed:
            continue
        if named in by_key_id:
            under_server_key.setdefault((table, column), set()).add(by_key_id[named])
        if named == dek_id:
            under_dek.add((table, column))
    assert under_dek == CONTENT_COLUMNS
    # The gate seals wraps that stay HPKE wraps to the archive key inside
    # (``test_no_server_key_opens_any_wrap`` opens the gate and tries every key on them).
    assert under_server_key.pop(GATE_COLUMN) == {"archive-gate"}
    assert set(under_server_key) <= PROFILE_COLUMNS
    assert set(under_server_key) >= {
        ("accounts", "email_ciphertext"),
        ("member_profiles", "insurance_number_ciphertext"),
    }
    assert set().union(*under_server_key.values()) == {"profile"}
    # What the profile key opens is personal data, none of it a key.
    with runtime.database.transaction() as session:
        opened = [
            runtime.profiles.open(account.id, name, getattr(account, f"{name}_ciphertext"))
            for account in session.scalars(select(Account))
            for name in ("email", "last_name", "totp_secret")
        ]
    assert PERSONAL_DATA["member email"] in opened
    keys = {name: value for name, value in stolen.secrets.items() if isinstance(value, bytes)}
    for value in filter(None, opened):
        assert found_in(value.encode(), keys) == []


def _wrap_context(session, row: ConversationKeyWrap) -> tuple[uuid.UUID, uuid.UUID, str]:
    conversation = session.get(Conversation, row.conversation_id)
    holder = wrapped_for(row.holder)
    if holder == Holder.MEMBER:
        return conversation.member_id, conversation.id, wrap_purpose(holder)
    role_key = session.scalar(select(RoleKey).where(RoleKey.key_id == row.recipient_key_id))
    return role_key.id, conversation.id, wrap_purpose(holder)


def test_no_server_key_opens_any_wrap(runtime, stolen):
    as_seeds = {
        name: hybrid_kem.load_private_key(key) for name, key in server_keys(runtime).items()
    }
    holders = {
        Holder.MEMBER: stolen.sessions["member"].principal.keyring.personal,
        Holder.PHYSICIAN: stolen.sessions["clinician"]
        .principal.keyring.role_keys(KeyRole.PHYSICIAN)[0]
        .key,
        Holder.ARCHIVE: stolen.sessions["compliance"]
        .principal.keyring.role_keys(KeyRole.ARCHIVE)[0]
        .key,
    }
    personal = {name: signed.principal.keyring.personal for name, signed in stolen.sessions.items()}
    with runtime.database.transaction() as session:
        wraps = [
            (row, *_wrap_context(session, row))
            for row in session.scalars(select(ConversationKeyWrap))
        ]
        grants = list(session.scalars(select(RoleKeyGrant)))
        owners = {p.id: name for name, p in stolen.people.items()}
    # The conversation is live: its archive wrap is gated (SECURITY-MODEL key hierarchy 10).
    assert sorted(row.holder for row, *_ in wraps) == [GATED, "member", "physician"]
    assert len(grants) == 2
    for row, recipient_id, context_id, purpose in wraps:
        context = {"recipient_id": recipient_id, "context_id": context_id, "purpose": purpose}
        sealed = row.wrap
        if row.holder == GATED:
            # The archive key alone opens nothing; the gate key lifts the gate, and what is
            # inside is an HPKE wrap that no server key opens either (tried below).
            with pytest.raises(crypto.DecryptionFailed):
                hybrid_kem.unwrap_key(holders[Holder.ARCHIVE], sealed, **context)
            sealed = runtime.archive_gate.open(
                sealed, conversation_id=context_id, recipient_key_id=row.recipient_key_id
            )
        holder = wrapped_for(row.holder)
        assert hybrid_kem.unwrap_key(holders[holder], sealed, **context) == stolen.dek
        for name, handle in as_seeds.items():
            for attempt in {row.wrap, sealed}:
                with pytest.raises(crypto.DecryptionFailed):
                    hybrid_kem.unwrap_key(handle, attempt, **context)
            assert hybrid_kem.wrap_key_id(sealed) != handle.key_id, name
    for grant in grants:
        context = {
            "recipient_id": grant.account_id,
            "context_id": grant.role_key_id,
            "purpose": hybrid_kem.PURPOSE_ROLE_KEY,
        }
        seed = hybrid_kem.unwrap_key(personal[owners[grant.account_id]], grant.wrap, **context)
        assert seed in stolen.secrets.values()
        for handle in as_seeds.values():
            with pytest.raises(crypto.DecryptionFailed):
                hybrid_kem.unwrap_key(handle, grant.wrap, **context)


def test_no_server_key_is_the_password_of_any_private_key(runtime, stolen):
    keys = server_keys(runtime)
    with runtime.database.transaction() as session:
        rows = [
            (row, session.get(Account, row.account_id).password_hash)
            for row in session.scalars(select(PersonalKey))
        ]
    assert len(rows) == 3
    for row, password_hash in rows:
        aad = crypto.associated_data(_PERSONAL_AAD, row.account_id, row.id)
        seed = open_with_password(
            row.private_key_ciphertext, stolen.password_of(row.account_id), aad=aad
        )
        assert hybrid_kem.load_private_key(seed).public_key_bytes == row.public_key
        # Neither the bcrypt hash the database holds nor any server key is the password.
        candidates = {"bcrypt hash": password_hash.decode()}
        for name, key in keys.items():
            candidates.update({f"{name} as {form}": text for form, text in as_text(key).items()})
        for name, password in candidates.items():
            with pytest.raises(crypto.DecryptionFailed):
                open_with_password(row.private_key_ciphertext, password, aad=aad)
                pytest.fail(f"{name} opened a private key")


def test_a_session_keyring_needs_both_its_token_and_the_session_keyring_key(runtime, stolen):
    keys = server_keys(runtime)
    secret = keys["session-keyring"]
    tokens = {
        crypto.token_hash(token): token
        for signed in stolen.sessions.values()
        for token in (signed.tokens.access_token, signed.tokens.refresh_token)
    }
    with runtime.database.transaction() as session:
        rows = list(session.scalars(select(AuthToken).where(AuthToken.sealed_keys.is_not(None))))
    assert len(rows) == 2 * len(stolen.sessions)
    for row in rows:
        token = tokens[row.token_hash]
        # Both halves: it opens (so every failure below is the missing half's).
        opened = open_keyring(row.sealed_keys, token, row.id, row.account_id, secret)
        assert opened.personal is not None
        # The captured token with every other server key, or with none (HKDF's empty salt is
        # 32 zero bytes: the token-only key keyrings had before).
        wrong_secrets = {name: key for name, key in keys.items() if key != secret}
        wrong_secrets["no server key"] = bytes(32)
        for name, other in wrong_secrets.items():
            with pytest.raises(crypto.DecryptionFailed):
                open_keyring(row.sealed_keys, token, row.id, row.account_id, other)
                pytest.fail(f"the token with {name} opened a session keyring")
        # The database and the key directory, without the token: nothing stands in for it.
        candidates = {
            "token hash (hex)": row.token_hash.hex(),
            "token hash (base64url)": base64.urlsafe_b64encode(row.token_hash).decode(),
        }
        for name, key in keys.items():
            candidates.update({f"{name} as {form}": text for form, text in as_text(key).items()})
        for name, candidate in candidates.items():
            with pytest.raises(crypto.DecryptionFailed):
                open_keyring(row.sealed_keys, candidate, row.id, row.account_id, secret)
                pytest.fail(f"{name} opened a session keyring")


def test_the_key_directory_holds_only_the_server_keys_and_public_pins(app, runtime, stolen):
    """So the server keys tried above are every key the server holds at rest."""
    directory: Path = runtime.keys.directory
    keys = server_keys(runtime)
    assert {p.name for p in directory.iterdir()} == {f"{n}.key" for n in KEY_NAMES} | {PIN_FILE}
    assert {name: (directory / f"{name}.key").read_bytes() for name in KEY_NAMES} == keys
    assert app.config["SECRET_KEY"] in keys.values()
    pins = json.loads((directory / PIN_FILE).read_text())
    with runtime.database.transaction() as session:
        role_keys = list(session.scalars(select(RoleKey)))
    assert pins == {
        row.role: [hybrid_kem.public_key_fingerprint(row.public_key)] for row in role_keys
    }
    assert found_in((directory / PIN_FILE).read_bytes(), stolen.secrets) == []


# -- the same through the HTTP API, where this build has it ---------------------------------


def test_the_server_keys_confirm_no_guess_of_a_message_from_an_idempotency_record(
    app, client, runtime
):
    require_conversation_api(app)
    from medchat.services.idempotency import _REQUEST_LABEL, canonical_json

    _member, _clinician, first = fill_over_http(client, runtime)
    guesses = [{"subject": SUBJECT, "body": "a wrong guess"}, first]
    with runtime.database.transaction() as session:
        records = session.execute(
            text_statement("SELECT account_id, scope, request_hash FROM idempotency_records")
        ).all()
    assert records
    confirmed = []
    for account_id, scope, request_hash in records:
        owner = account_id if isinstance(account_id, uuid.UUID) else uuid.UUID(str(account_id))
        for name, key in server_keys(runtime).items():
            for guess in guesses:
                attempt = crypto.mac(key, _REQUEST_LABEL, owner, scope, canonical_json(guess))
                if crypto.constant_time_equal(attempt, bytes(request_hash)):
                    confirmed.append(f"{scope} confirmed with the {name} key")
    assert confirmed == []
