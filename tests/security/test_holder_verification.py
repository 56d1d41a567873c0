"""Who counts as a holder of a role key (``medchat.keys.holders``): each fact that disqualifies a
grant, one at a time, with a valid holder granted after it.

The rule decides the last-holder refusal and whom a rotation hands the new key to, so a grant
wrongly counted keeps a leaver in, and one wrongly skipped can orphan the key. Every case has
a disqualified grant made *between* two valid ones (grants are read oldest first): a check
that stopped at the first disqualified grant instead of skipping it would lose the later
holder, and shows here.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import pytest
from sqlalchemy import delete, select

from access_control.roles import Role
from medchat import audit
from medchat.keys.holders import active_holders, lost_access_since
from medchat.models import (
    Account,
    AccountStatus,
    AuditEntry,
    KeyRole,
    PersonalKey,
    RoleKey,
    RoleKeyGrant,
    RoleKeyStatus,
)
from medchat.services.context import ServiceContext
from medchat.services.role_keys import RoleKeyService
from tests.support.accounts import Person, make_staff
from tests.support.messaging import CareTeam, care_team
from tests.support.rotation import grant, revoke, revoke_and_put_back, rotate
from tests.support.sessions import sign_in

PHYSICIAN = KeyRole.PHYSICIAN.value


def holders(runtime: ServiceContext) -> set[uuid.UUID]:
    with runtime.database.transaction() as session:
        return active_holders(session, runtime.custody(session), PHYSICIAN)


def active_grant(session, account_id: uuid.UUID) -> RoleKeyGrant:
    return session.scalars(
        select(RoleKeyGrant)
        .join(RoleKey, RoleKey.id == RoleKeyGrant.role_key_id)
        .where(RoleKeyGrant.account_id == account_id, RoleKey.status == RoleKeyStatus.ACTIVE)
    ).one()


def _account(change: Callable[[Account], None]):
    def disqualify(runtime: ServiceContext, _first: Person, target: Person) -> None:
        with runtime.database.transaction() as session:
            change(session.get(Account, target.id))

    return disqualify


def _sealed_to_another_key(runtime: ServiceContext, first: Person, target: Person) -> None:
    # A tagged grant whose wrap opens only with someone else's personal key.
    with runtime.database.transaction() as session:
        active_grant(session, target.id).wrap = active_grant(session, first.id).wrap


def _personal_key_gone(runtime: ServiceContext, _first: Person, target: Person) -> None:
    with runtime.database.transaction() as session:
        session.execute(delete(PersonalKey).where(PersonalKey.account_id == target.id))


DISQUALIFIERS = {
    "grant-put-back-after-a-revocation": revoke_and_put_back,
    "account-disabled": _account(lambda a: setattr(a, "status", AccountStatus.DISABLED)),
    "account-pending": _account(lambda a: setattr(a, "status", AccountStatus.PENDING)),
    "account-of-another-role": _account(lambda a: setattr(a, "role", Role.COMPLIANCE.value)),
    "grant-sealed-to-another-key": _sealed_to_another_key,
    "no-personal-key": _personal_key_gone,
}


@pytest.mark.parametrize("disqualify", DISQUALIFIERS.values(), ids=DISQUALIFIERS.keys())
def test_a_disqualified_grant_is_skipped_and_the_holders_after_it_still_count(runtime, disqualify):
    team = care_team(runtime)
    skipped = make_staff(runtime, Role.CLINICIAN)
    later = make_staff(runtime, Role.CLINICIAN)
    runtime.clock.advance(seconds=60)
    grant(runtime, team.clinician, skipped)
    runtime.clock.advance(seconds=60)
    grant(runtime, team.clinician, later)
    assert holders(runtime) == {team.clinician.id, skipped.id, later.id}

    disqualify(runtime, team.clinician, skipped)

    assert holders(runtime) == {team.clinician.id, later.id}


def two_colleagues(runtime) -> tuple[CareTeam, Person, Person]:
    """The care team's clinician and two colleagues holding the physician key, a minute ago."""
    team = care_team(runtime)
    colleague, leaver = (make_staff(runtime, Role.CLINICIAN) for _ in range(2))
    grant(runtime, team.clinician, colleague)
    grant(runtime, team.clinician, leaver)
    runtime.clock.advance(seconds=60)
    return team, colleague, leaver


def test_a_loss_of_access_counts_for_that_account_only(runtime):
    team, colleague, leaver = two_colleagues(runtime)

    revoke(runtime, team.clinician, leaver)

    assert holders(runtime) == {team.clinician.id, colleague.id}


def test_only_a_loss_recorded_against_the_account_counts(runtime):
    """Other audited acts on the account, and a loss-of-access action naming the same id as
    another kind of target, leave the grant standing."""
    team = care_team(runtime)
    colleague = make_staff(runtime, Role.CLINICIAN)
    grant(runtime, team.clinician, colleague)
    runtime.clock.advance(seconds=60)
    with runtime.database.transaction() as session:
        audit.record(session, "account.update", target_type="account", target_id=colleague.id)
        audit.record(session, "role_key.revoke", target_type="role_key", target_id=colleague.id)

    assert holders(runtime) == {team.clinician.id, colleague.id}
    with runtime.database.transaction() as session:
        assert not lost_access_since(session, active_grant(session, colleague.id))


def test_a_grant_made_again_in_the_instant_of_the_revocation_counts(runtime):
    """Only a grant older than the loss is a put-back row: one made at the same clock reading,
    after the revocation, is the new grant."""
    team = care_team(runtime)
    colleague = make_staff(runtime, Role.CLINICIAN)
    grant(runtime, team.clinician, colleague)
    actor = sign_in(runtime, team.clinician).principal  # signing in moves the test clock
    revoke(runtime, team.clinician, colleague, actor)
    with runtime.database.transaction() as session:
        RoleKeyService(session, runtime).grant(actor, KeyRole.PHYSICIAN, colleague.id)
        again = active_grant(session, colleague.id)
        revoked_at = session.scalar(
            select(AuditEntry.at).where(
                AuditEntry.action == "role_key.revoke",
                AuditEntry.target_id == str(colleague.id),
            )
        )
        assert again.created_at == revoked_at

    assert holders(runtime) == {team.clinician.id, colleague.id}


def test_a_rotation_names_the_holders_it_hands_the_key_to_in_the_order_they_were_granted(
    runtime,
):
    """The rotation's audit entry lists the holders oldest grant first (equal times by account
    id): the same list on every run and every database, whatever order the rows lie in."""
    team = care_team(runtime)
    first, tied_high, tied_low = sorted(
        (make_staff(runtime, Role.CLINICIAN) for _ in range(3)), key=lambda p: p.id, reverse=True
    )
    grant(runtime, team.clinician, first)
    actor = sign_in(runtime, team.clinician).principal
    with runtime.database.transaction() as session:  # one clock reading for both grants
        RoleKeyService(session, runtime).grant(actor, KeyRole.PHYSICIAN, tied_high.id)
        RoleKeyService(session, runtime).grant(actor, KeyRole.PHYSICIAN, tied_low.id)

    rotate(runtime, team.clinician)

    with runtime.database.transaction() as session:
        details = session.scalars(
            select(AuditEntry.details).where(AuditEntry.action == "role_key.rotation_grant")
        ).one()
    named = json.loads(details)["holders"]
    assert named == [str(first.id), str(tied_low.id), str(tied_high.id)]


def test_a_holder_of_a_successor_key_only_does_not_hold_the_active_key(runtime):
    team, colleague, leaver = two_colleagues(runtime)
    revoke(runtime, team.clinician, leaver)  # makes a successor sealed to both who remain
    with runtime.database.transaction() as session:
        statuses = set(
            session.scalars(
                select(RoleKey.status)
                .join(RoleKeyGrant, RoleKeyGrant.role_key_id == RoleKey.id)
                .where(RoleKeyGrant.account_id == colleague.id)
            )
        )
        assert RoleKeyStatus.SUCCESSOR in statuses
        session.delete(active_grant(session, colleague.id))

    assert holders(runtime) == {team.clinician.id}
