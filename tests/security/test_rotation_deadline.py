"""A due rotation is not advisory (issue 18, item 2): warned, then enforced.

A holder who lost the physician key may still hold it, and until the key rotates new content
is sealed under DEKs wrapped to it. So from the loss on the remaining holders are mailed and
every staff answer of a request that sealed content says ``Medchat-Rotation-Due``; past
``MEDCHAT_ROTATION_DEADLINE_HOURS`` every new seal (question, message, file) is refused with
``503 rotation_overdue`` and nothing is written, reads go on, and a holder's rotation lifts it.
"""

from __future__ import annotations

import io
from datetime import timedelta

import pytest

from access_control.roles import Role
from medchat.config import Settings
from medchat.errors import ConfigurationError
from medchat.models import Attachment, Conversation, Message
from tests.support.accounts import bearer, login, make_member, make_staff
from tests.support.cli import cli_runner
from tests.support.mailbox import delivered
from tests.support.messaging import (
    CONVERSATIONS,
    ask,
    asked,
    care_team,
    claim,
    count,
    give_consent,
    send,
)
from tests.support.rotation import grant, rotate
from tests.support.sample_files import pdf

CLINICIAN = "/api/v1/clinician"
HEADER = "Medchat-Rotation-Due"


def upload(client, tokens, conversation_id: str):
    return client.post(
        f"{CONVERSATIONS}/{conversation_id}/attachments",
        headers=bearer(tokens),
        data={"file": (io.BytesIO(pdf("scan")), "scan.pdf", "application/pdf")},
        content_type="multipart/form-data",
    )


def stored(runtime) -> tuple[int, int, int]:
    return count(runtime, Conversation), count(runtime, Message), count(runtime, Attachment)


def test_past_the_deadline_nothing_new_is_sealed_until_a_holder_rotates(make_app, tmp_path, clock):
    app = make_app(mail_url=f"file://{tmp_path}", rotation_deadline_hours=24)
    runtime, client = app.extensions["medchat"], app.test_client()
    team = care_team(runtime)
    alice = team.clinician
    bob = make_staff(runtime, Role.CLINICIAN, first_name="Bob", last_name="Leaver")
    grant(runtime, alice, bob)
    person = make_member(runtime)
    member = login(client, runtime, person)
    give_consent(client, member)
    conversation_id = asked(client, member, "A question.")
    mine = f"{CONVERSATIONS}/{conversation_id}/messages"
    theirs = f"{CLINICIAN}/conversations/{conversation_id}/messages"

    doctor = login(client, runtime, alice)
    claim(client, doctor, conversation_id)
    revoked = client.delete(
        f"{CLINICIAN}/colleagues/{bob.id}/grant",
        json={"password": alice.password},
        headers=bearer(doctor),
    )
    assert revoked.status_code == 204 and revoked.headers[HEADER] == "physician"
    deadline = (clock.now() + timedelta(hours=24)).isoformat()

    # The remaining holder is mailed the deadline; the one who lost the key is not.
    mails = [message for message, _ in delivered(runtime, tmp_path)]
    assert [message["To"] for message in mails] == [alice.email]
    text = mails[0].get_content()
    assert "physician" in text and deadline in text and "medchat keys rotate" in text

    # Due: sealed as before; staff are told on each answer that sealed, members are not.
    warned = send(client, doctor, theirs, "Still answering.")
    assert warned.status_code == 201 and warned.headers[HEADER] == "physician"
    quiet = send(client, member, mine, "Thanks.")
    assert quiet.status_code == 201 and HEADER not in quiet.headers

    clock.advance(hours=24)
    member, doctor = login(client, runtime, person), login(client, runtime, alice)
    claim(client, doctor, conversation_id)  # a claim seals nothing: taken while overdue
    before = stored(runtime)
    refusals = [
        send(client, member, mine, "Overdue?"),
        send(client, doctor, theirs, "Overdue?"),
        ask(client, member, "A new question."),
        upload(client, member, conversation_id),
    ]
    for response in refusals:
        assert response.status_code == 503, response.get_json()
        error = response.get_json()["error"]
        assert error["code"] == "rotation_overdue"
        assert "medchat keys rotate" in error["message"]
        assert error["details"] == {"roles": ["physician"], "deadline": deadline}
    assert refusals[1].headers[HEADER] == "physician" and HEADER not in refusals[0].headers
    assert stored(runtime) == before
    # Reads go on.
    assert client.get(mine, headers=bearer(member)).status_code == 200
    assert client.get(theirs, headers=bearer(doctor)).status_code == 200
    status = cli_runner(app).invoke(args=["keys", "status"])
    assert "OVERDUE: new content refused since" in status.stdout

    rotate(runtime, alice)

    doctor = login(client, runtime, alice)
    answered = send(client, doctor, theirs, "Back to normal.")
    assert answered.status_code == 201 and HEADER not in answered.headers
    assert send(client, member, mine, "Thank you.").status_code == 201
    assert ask(client, member, "Another question.").status_code == 201


@pytest.mark.parametrize("hours", ["0", "721", "soon"])
def test_the_deadline_is_a_bounded_number_of_hours(hours):
    with pytest.raises(ConfigurationError, match="ROTATION_DEADLINE_HOURS"):
        Settings.from_env({"MEDCHAT_ROTATION_DEADLINE_HOURS": hours})
