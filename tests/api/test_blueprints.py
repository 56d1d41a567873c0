"""Every API blueprint of the application is ``medchat.api.blueprint.Blueprint``, whose argument
schemas are made once; the OpenAPI document does not change with it."""

from __future__ import annotations

import flask_smorest
import marshmallow
from flask import Flask

from medchat.api.blueprint import Blueprint
from tests.support.made import objects_made


def test_every_documented_blueprint_is_the_apis_own(app):
    documented = [bp for bp in app.blueprints.values() if isinstance(bp, flask_smorest.Blueprint)]

    assert len(documented) >= 10  # the walk sees the API (auth, member, clinician, ...)
    assert [bp.name for bp in documented if not isinstance(bp, Blueprint)] == []


def test_a_schema_class_is_made_once_when_the_view_is_declared(monkeypatch):
    class Query(marshmallow.Schema):
        n = marshmallow.fields.Integer(required=True)

    made = objects_made(monkeypatch, marshmallow.Schema)
    bp = Blueprint("probe", __name__, url_prefix="/probe")

    @bp.route("/")
    @bp.arguments(Query, location="query")
    def probe(args):
        return {"n": args["n"]}

    assert made.count(Query) == 1
    probe_app = Flask("probe")
    probe_app.config.update(API_TITLE="p", API_VERSION="1", OPENAPI_VERSION="3.0.2")
    flask_smorest.Api(probe_app).register_blueprint(bp)
    client = probe_app.test_client()
    assert client.get("/probe/?n=2").get_json() == {"n": 2}
    assert client.get("/probe/?n=3").get_json() == {"n": 3}
    assert client.get("/probe/?n=x").status_code == 422
    assert made.count(Query) == 1
