"""A stolen database holds nothing readable (SECURITY-MODEL "Key hierarchy": "a full copy of
the database plus the server's configuration reveals no message, attachment, or key that opens
one"); this module covers the database's bytes themselves.

The database is filled the way the service fills it (a member with personal data, a
conversation with a subject, messages, an attachment and a clinician's reply) while the test
keeps every secret that exists in its memory: the DEK, the role and personal private keys,
the password-derived keys, the tokens and the keys derived from them. Then the stored bytes
(the SQLite file with its WAL, or ``pg_dump`` plus every column) hold no content, no personal
field and none of those secrets, in any usual encoding; and the same holds when the content is
sent through the HTTP API, where this build has it. Each search has its control: what is stored
in clear by design (staff display names, public keys) is found, so an empty result is the
dump's and not the search's.

That no key the server holds at rest opens what the dump does hold is
``test_stolen_database_server_keys.py``; the filling and the canaries are in
``tests/support/stolen_database.py``.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from medchat.models import PersonalKey, RoleKey
from medchat.services.context import ServiceContext
from tests.support.dump import database_dump
from tests.support.leaks import found_in
from tests.support.sample_files import as_stored
from tests.support.stolen_database import (
    ATTACHMENT_DATA,
    ATTACHMENT_MARK,
    ATTACHMENT_NAME,
    ATTACHMENT_UPLOAD,
    BODIES,
    PERSONAL_DATA,
    REPLY,
    SUBJECT,
    Stolen,
    fill_database,
    fill_over_http,
    require_conversation_api,
)


@pytest.fixture
def stolen(runtime: ServiceContext) -> Stolen:
    return fill_database(runtime)


def test_the_dump_holds_no_content_and_no_personal_field_in_any_encoding(runtime, stolen):
    dump = database_dump(runtime.database.engine)
    content = {
        "subject": SUBJECT,
        **{f"message body {i}": body for i, body in enumerate(BODIES, 1)},
        "clinician reply": REPLY,
        "attachment file name": ATTACHMENT_NAME,
        "attachment bytes": ATTACHMENT_MARK,
        "attachment file": ATTACHMENT_DATA,
    }
    # The search works: what is stored in clear by design (how staff are shown) is found.
    assert b"Alice M." in dump and b"Dr. M." in dump
    assert found_in(dump, content) == []
    assert found_in(dump, PERSONAL_DATA) == []
    assert b"qv9canary" not in dump.lower()


def test_the_dump_holds_no_key_that_opens_the_content(runtime, stolen):
    dump = database_dump(runtime.database.engine)
    with runtime.database.transaction() as session:
        public_keys = {
            f"public key {row.key_id.hex()}": row.public_key
            for row in [*session.scalars(select(PersonalKey)), *session.scalars(select(RoleKey))]
        }
    # The search works: public keys are stored, and found, in every backend's dump.
    assert len(found_in(dump, public_keys)) >= len(public_keys)
    assert found_in(dump, stolen.secrets) == []


# -- the same through the HTTP API, where this build has it ---------------------------------


def test_content_sent_through_the_api_leaves_nothing_readable_in_the_dump(app, client, runtime):
    require_conversation_api(app)
    fill_over_http(client, runtime)
    dump = database_dump(runtime.database.engine)
    content = {
        "subject": SUBJECT,
        **{f"message body {i}": body for i, body in enumerate(BODIES, 1)},
        "clinician reply": REPLY,
        "attachment file name": ATTACHMENT_NAME,
        "attachment bytes": ATTACHMENT_MARK,
    }
    # Control: a staff display name is stored in clear, and found.
    assert b"Alice M." in dump
    # Control: the file as stored (cleaned) still carries the mark in clear.
    assert ATTACHMENT_MARK.encode() in as_stored(ATTACHMENT_UPLOAD)
    assert found_in(dump, content) == []
    assert found_in(dump, PERSONAL_DATA) == []
