"""A page of messages sees what its own unit of work changed before it, on both databases.

On PostgreSQL the page runs through the driver (``medchat.db_driver``), not through
``Session.execute``, whose autoflush would otherwise send pending changes first:
``message_page`` flushes them itself."""

from __future__ import annotations

from medchat.models import Account
from medchat.services.conversations import ConversationService
from tests.support.accounts import make_member
from tests.support.conversations import reply, start_conversation
from tests.support.messaging import care_team
from tests.support.sessions import sign_in


def test_a_page_sees_a_change_its_unit_of_work_has_not_flushed_yet(runtime):
    team = care_team(runtime)
    member = sign_in(runtime, make_member(runtime)).principal
    doctor = sign_in(runtime, team.clinician).principal
    started = start_conversation(runtime, member, subject="Headache", bodies=["Three days now."])
    reply(runtime, doctor, started.id, "Please come in.")

    with runtime.database.transaction() as session:
        service = ConversationService(session, runtime)
        conversation, dek = service.open(member, started.id)
        clinician = session.get(Account, team.clinician.id)
        assert clinician is not None
        clinician.display_name = "Dr. A. Martin"
        page = service.message_page(conversation, dek, limit=10)

    assert [(m.body, m.author_name) for m in page.items] == [
        ("Please come in.", "Dr. A. Martin"),
        ("Three days now.", None),
    ]
