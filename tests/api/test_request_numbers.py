"""A JSON body's whole-number field refuses any other number; it never rounds one (the class).

The contract run found ``POST /api/v1/me/push-subscriptions`` answering 201 to
``"expirationTime": 2.589e-42``, which its schema (``integer``) refuses: marshmallow's
``Integer`` without ``strict=True`` turns a float into an int (``int(1.5) == 1``,
``int(2.6e-42) == 0``), so a body the document calls invalid was taken, and changed. Every
``Integer`` field of every JSON body of every route (from ``app.url_map``'s views, through
nested schemas and lists) is strict. Query parameters are left out on purpose: they arrive as
strings, which a strict field would refuse, and a string that is not a whole number is refused
anyway (``int("1.5")`` raises).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import marshmallow as ma
import pytest
from marshmallow import fields
from sqlalchemy import func, select

from medchat.models.notifications import PushSubscription
from medchat.schemas.common import JsonBoolean
from tests.support.accounts import bearer, login, make_member
from tests.support.messaging import CONSENT, CONSENT_VERSION, give_consent
from tests.support.push_endpoint import BrowserKeys

SUBSCRIPTIONS = "/api/v1/me/push-subscriptions"
SETTINGS = "/api/v1/me/notifications"
ENDPOINT = "https://fcm.googleapis.com/fcm/send/whole-numbers"


def subscriptions(runtime: Any) -> int:
    with runtime.database.transaction() as session:
        return session.scalar(select(func.count()).select_from(PushSubscription)) or 0


def body_schemas(app: Any) -> Iterator[tuple[str, ma.Schema]]:
    """Each route's JSON body schema, as flask-smorest recorded it on the view."""
    for endpoint, view in sorted(app.view_functions.items()):
        arguments = getattr(view, "_apidoc", {}).get("arguments", {})
        for parameter in arguments.get("parameters", []):
            if parameter.get("in") == "json":
                schema = parameter["schema"]
                yield endpoint, schema() if isinstance(schema, type) else schema


def typed_fields(schema: ma.Schema, path: str) -> Iterator[tuple[str, fields.Field]]:
    """Every number and boolean field of ``schema``, nested ones included."""
    for name, field in schema.fields.items():
        yield from _walk(field, f"{path}.{name}")


def _walk(field: fields.Field, path: str) -> Iterator[tuple[str, fields.Field]]:
    if isinstance(field, (fields.Number, fields.Boolean)):
        yield path, field
    elif isinstance(field, fields.Nested):
        yield from typed_fields(field.schema, path)
    elif isinstance(field, fields.List):
        yield from _walk(field.inner, f"{path}[]")
    elif isinstance(field, fields.Tuple):
        for index, inner in enumerate(field.tuple_fields):
            yield from _walk(inner, f"{path}[{index}]")
    elif isinstance(field, fields.Dict) and field.value_field is not None:
        yield from _walk(field.value_field, f"{path}{{}}")


def takes_only_its_json_type(field: fields.Field) -> bool:
    if isinstance(field, JsonBoolean):
        return True
    return isinstance(field, fields.Integer) and field.strict


def test_every_number_and_boolean_of_every_json_body_takes_only_its_json_type(app):
    found = [
        (path, field)
        for endpoint, schema in body_schemas(app)
        for path, field in typed_fields(schema, endpoint)
    ]
    kinds = {
        type(field).__mro__[1] if isinstance(field, JsonBoolean) else type(field)
        for _, field in found
    }
    assert {fields.Integer, fields.Boolean} <= kinds, "the walk reads no body's numbers or booleans"
    loose = [path for path, field in found if not takes_only_its_json_type(field)]
    assert loose == [], loose


@pytest.mark.parametrize(
    ("value", "created"),
    [
        (2.589e-42, False),
        (1.5, False),
        (1e300, False),
        ("17", False),
        (None, True),
        (0, True),
        (1_767_225_600_000, True),
    ],
)
def test_a_subscriptions_expiration_is_a_whole_number_or_nothing(client, runtime, value, created):
    member = make_member(runtime)
    tokens = login(client, runtime, member)
    give_consent(client, tokens)
    body = {**BrowserKeys().as_json(ENDPOINT), "expirationTime": value}
    response = client.post(SUBSCRIPTIONS, json=body, headers=bearer(tokens))
    assert response.status_code == (201 if created else 422), response.get_json()
    if not created:
        assert "expirationTime" in response.get_json()["error"]["details"]
    assert subscriptions(runtime) == int(created)


@pytest.mark.parametrize("value", [1, 0, "true", "yes", "on", "1", 1.0])
def test_a_boolean_setting_given_anything_but_true_or_false_is_a_422(client, runtime, value):
    member = make_member(runtime)
    tokens = login(client, runtime, member)
    give_consent(client, tokens)
    before = client.get(SETTINGS, headers=bearer(tokens)).get_json()
    response = client.put(SETTINGS, json={"email": value}, headers=bearer(tokens))
    assert response.status_code == 422, response.get_json()
    assert "email" in response.get_json()["error"]["details"]
    assert client.get(SETTINGS, headers=bearer(tokens)).get_json() == before
    assert client.put(SETTINGS, json={"email": True}, headers=bearer(tokens)).status_code == 200


def test_the_document_still_calls_them_boolean_and_integer(client):
    document = client.get("/api/v1/openapi.json").get_json()
    schemas = document["components"]["schemas"]
    settings = next(s for n, s in schemas.items() if n.startswith("NotificationSettingsUpdate"))
    assert settings["properties"]["email"]["type"] == "boolean"
    subscription = next(s for n, s in schemas.items() if n.startswith("PushSubscriptionCreate"))
    assert subscription["properties"]["expirationTime"]["type"] == ["integer", "null"]


@pytest.mark.parametrize("value", [1, 1.0, "true", "yes"])
def test_consent_is_never_read_from_anything_but_true(client, runtime, value):
    """``truthy={True}`` let ``1`` through (``1 in {True}``): consent given by a number."""
    member = make_member(runtime)
    tokens = login(client, runtime, member)
    response = client.put(
        CONSENT,
        json={"health_messaging": value, "version": CONSENT_VERSION},
        headers=bearer(tokens),
    )
    assert response.status_code == 422, response.get_json()
    assert "health_messaging" in response.get_json()["error"]["details"]
    state = client.get(CONSENT, headers=bearer(tokens)).get_json()
    assert state["health_messaging"]["granted"] is False
