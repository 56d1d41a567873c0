"""Signing in through the real service and holding the principal a request would get."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from medchat.identity.principal import Principal
from medchat.identity.tokens import TokenPair, TokenStore
from medchat.models import TokenKind
from medchat.services.authentication import AuthenticationService
from medchat.services.context import ServiceContext
from tests.support.accounts import Person, code_for

#: Where in-process sign-ins come from: inside the tests' staff networks, as the test client.
STAFF_ADDRESS = "127.0.0.1"


@dataclass(frozen=True, repr=False)
class SignedIn:
    """A sign-in: the tokens the client holds and the principal its access token loads."""

    principal: Principal
    tokens: TokenPair


def sign_in(runtime: ServiceContext, person: Person) -> SignedIn:
    """Log in with password (and a fresh TOTP code where the account has one), then load the
    principal exactly as the bearer loader does; its keyring is opened while the row is loaded.
    """
    code = None
    if person.totp_secret:
        runtime.clock.advance(seconds=30)  # type: ignore[attr-defined]
        code = code_for(person, runtime)
    with runtime.database.transaction() as session:
        signed = AuthenticationService(session, runtime).login(
            person.email, person.password, code, address=STAFF_ADDRESS
        )
    return SignedIn(principal_for(runtime, signed.tokens.access_token), signed.tokens)


def principal_for(runtime: ServiceContext, access_token: str) -> Principal:
    """The principal of a live access token (``InvalidToken`` for a dead one)."""
    with runtime.database.transaction() as session:
        record, account = TokenStore(session, runtime.clock.now()).authenticate(
            access_token, TokenKind.ACCESS
        )
        principal = Principal(
            account, record, access_token, keyring_secret=runtime.keys.session_keyring
        )
        principal.keyring  # noqa: B018  (opened while the row is loaded)
    return principal


def attached(principal: Principal, session: Session) -> Principal:
    """The same caller with its account as a row of ``session``, as a request's principal has
    it (services that change the account need that; ``sign_in``'s session has ended)."""
    principal._account = session.merge(principal.account)
    return principal
