"""The admin's audit view decides on an entry's columns only when the server wrote them.

An entry's columns decide what the admin sees of it: whom it is about (a member's entries are
pseudonymous, without address or details), who acted, whether its sealed address is opened.
One INSERT (which the application's login may make on ``audit_entries``) copied a member's
entry with its own id, so its sealed address still opened, and made it an admin's entry of a
new chain: the view showed the member's address. Now an entry whose hash and MAC do not verify
on their own (``medchat.audit.entry_format.is_genuine``) shows nothing but that it is there,
whichever of its hashed columns was altered.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, insert, select

from access_control.roles import Role
from medchat.audit.entry_format import ENTRY_COLUMNS
from medchat.models import AuditEntry
from tests.support.accounts import bearer, login, make_member, make_staff

ADDRESS = "198.51.100.23"
AUDIT = "/api/v1/admin/audit?limit=100"
#: What a copy of the member's entry is changed to, column by column, to pass as an admin's.
ALTERED = {
    "seq": None,  # the next free one
    "chain": "audit/63",
    "position": 1,
    "format": 2,
    "at": None,  # a second later
    "actor_id": None,
    "actor_role": "admin",
    "action": "account.create",
    "outcome": "failure",
    "target_type": "account",
    "target_id": None,
    "subject_id": None,
    "address": ADDRESS,
    "address_hash": b"\0" * 32,
    "details": '{"role": "clinician"}',
}
assert set(ALTERED) == set(ENTRY_COLUMNS) - {"id"}, "a hashed column this test does not alter"


@pytest.fixture
def world(app, client, runtime):
    member = make_member(runtime)
    home = app.test_client()
    home.environ_base["REMOTE_ADDR"] = ADDRESS
    login(home, runtime, member)
    admin = bearer(login(client, runtime, make_staff(runtime, Role.ADMIN)))
    assert ADDRESS not in json.dumps(client.get(AUDIT, headers=admin).get_json())
    return member, admin


def _plant_copy(runtime, member, changes: dict) -> dict:
    """A copy of the member's entry that holds their sealed address, with ``changes``."""
    table = AuditEntry.__table__
    with runtime.database.engine.begin() as db:
        row = dict(
            db.execute(
                select(table).where(
                    (table.c.actor_id == member.id)
                    | (table.c.subject_id == member.id)
                    | (table.c.target_id == str(member.id)),
                    table.c.address_sealed.is_not(None),
                )
            )
            .mappings()
            .first()
        )
        top = db.execute(select(func.max(table.c.seq))).scalar_one()
        # A chain of its own, past every seq the database sequence will hand out here.
        row.update(seq=top + 10**9, chain="audit/63", position=1)
        for name, value in changes.items():
            if name == "at":
                value = row["at"].replace(microsecond=(row["at"].microsecond + 1) % 1_000_000)
            row[name] = row[name] if name == "seq" else value
        db.execute(insert(table).values(**row))
    return row


def test_a_copied_entry_made_an_admins_shows_nothing_of_the_member(client, runtime, world):
    member, admin = world
    planted = _plant_copy(
        runtime,
        member,
        {"actor_role": "admin", "actor_id": None, "subject_id": None, "target_id": None},
    )

    items = client.get(AUDIT, headers=admin).get_json()["items"]

    assert ADDRESS not in json.dumps(items)
    (shown,) = [item for item in items if item["seq"] == planted["seq"]]
    assert (shown["address"], shown["details"], shown["actor_id"]) == (None, {}, None)


@pytest.mark.parametrize("column", sorted(ALTERED))
def test_any_hashed_column_altered_on_a_copy_makes_it_show_nothing(client, runtime, world, column):
    member, admin = world
    planted = _plant_copy(
        runtime,
        member,
        {"actor_role": "admin", "actor_id": None, "subject_id": None, column: ALTERED[column]},
    )
    items = client.get(AUDIT, headers=admin).get_json()["items"]
    (shown,) = [item for item in items if item["seq"] == planted["seq"]]
    assert shown["address"] is None, column
    assert shown["details"] == {}, column


def test_the_check_can_fail_a_genuine_admins_entry_is_shown_whole(client, runtime, world):
    _, admin = world
    created = client.post(
        "/api/v1/admin/accounts",
        json={
            "email": "new.doctor@clinic.example.org",
            "role": "clinician",
            "first_name": "Ada",
            "last_name": "Quist",
        },
        headers=admin,
    )
    assert created.status_code == 201, created.get_json()
    items = client.get(AUDIT, headers=admin).get_json()["items"]
    entry = next(item for item in items if item["action"] == "account.create")  # the newest
    assert entry["details"] == {"role": "clinician"}
    assert entry["address"] == "127.0.0.1"
