"""The two measured requests, a send and a read-50, through each stack's Flask test client.

One set-up for the in-process tools (``bench.profile`` times and profiles the requests,
``bench.instructions`` counts their instructions): a medchat member who consented, with a
conversation to send to and one with a history to read, and the bare app's two conversations.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from typing import Any

from bench import seed
from bench.environment import Environment

Requests = dict[str, Callable[[], Any]]
#: The status each request answers when it worked.
EXPECTED = {"send": 201, "read": 200}
BODY = json.dumps({"body": seed.message_text(7)})


def medchat_requests(
    env: Environment,
    closers: list[Callable[[], None]],
    *,
    history: int,
    before_app: Callable[[], None] = lambda: None,
) -> tuple[Any, seed.Member, Requests]:
    """medchat's app (made after ``before_app``), its member, and the two requests.

    ``closers`` gets what must be closed before the database is dropped.
    """
    seeder = seed.MedchatSeeder(env)
    closers.append(seeder.close)
    seeder.create_staff_and_keys()
    (member,) = seeder.create_members(1, [1])
    os.environ.update(env.medchat_env())
    before_app()
    from medchat import create_app

    app = create_app()
    closers.append(app.extensions["medchat"].database.engine.dispose)
    client = app.test_client()
    auth = {"Authorization": f"Bearer {member.tokens[0]}"}
    consent = {"health_messaging": True, "version": seed.CONSENT_VERSION}
    response = client.put("/api/v1/me/consent", json=consent, headers=auth)
    assert response.status_code == 200, response.get_json()

    def start(subject: str) -> uuid.UUID:
        question = {"subject": subject, "body": seed.message_text(0), "emergency_notice": "2026-12"}
        response = client.post("/api/v1/conversations", json=question, headers=auth)
        assert response.status_code == 201, response.get_json()
        return uuid.UUID(response.get_json()["id"])

    send_chat, read_chat = start("send"), start("read")
    seeder.add_history(member, read_chat, history)
    return (
        app,
        member,
        {
            "send": lambda: client.post(
                f"/api/v1/conversations/{send_chat}/messages",
                data=BODY,
                content_type="application/json",
                headers=auth,
            ),
            "read": lambda: client.get(
                f"/api/v1/conversations/{read_chat}/messages?limit=50", headers=auth
            ),
        },
    )


def bare_requests(env: Environment, member_id: uuid.UUID, *, history: int) -> Requests:
    """The bare app's two requests, on conversations of its own (plaintext, same bodies)."""
    from bench import bare_app

    bare_app.create_schema(env.database_url)
    send_chat = seed.bare_conversation(env, member_id, 1)
    read_chat = seed.bare_conversation(env, member_id, history)
    client = bare_app.create_app(env.database_url).test_client()
    return {
        "send": lambda: client.post(
            f"/bare/conversations/{send_chat}/messages", data=BODY, content_type="application/json"
        ),
        "read": lambda: client.get(f"/bare/conversations/{read_chat}/messages?limit=50"),
    }
