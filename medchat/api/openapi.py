"""The served OpenAPI document says what the service does, so clients can be generated from it.

flask-smorest writes each operation from its schemas; this module adds what they cannot say,
from the same declarations the service enforces, so the document cannot drift from the code:

- **Security**: an HTTP bearer scheme, required by every operation whose view declares a
  permission other than ``PUBLIC`` (``medchat.web.guard.requires``), so a generated client
  sends the access token.
- **Errors**: no catch-all ``default`` response. Each operation lists the statuses it can
  answer, each with the error body ``{"error": {"code", "message", "details"}}``
  (``medchat.web.errors``): 401 (with ``WWW-Authenticate``) and 403 where a permission is
  checked, 404 where the path names a resource, 400 and 413 where a body is read, 415 for
  uploads, 422 where anything is validated, 409 where stored state can refuse (integrity
  checks everywhere a row is read, and the conflicts ``operation_refusals`` names), 429 (with
  ``Retry-After``) where a view is throttled, and 503 (with ``Retry-After``) everywhere.
- **Strings**: every string of a request schema carries the pattern of the text rule
  (``medchat.schemas.common.TEXT_PATTERN``) unless a stricter pattern of its own applies.
- **Media types and headers** the schemas cannot name: the FHIR export
  (``application/fhir+json``), downloads, the signed archive bundle, ``Content-Disposition``,
  ``Idempotent-Replayed`` and ``Medchat-Rotation-Due`` (``_SUCCESS``).

What JSON Schema cannot say (password strength, a birth date not in the future, the bytes of
an accepted file type) is in the fields' descriptions; docs/api.md lists it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import marshmallow as ma
from apispec import APISpec, BasePlugin
from flask import Flask
from werkzeug.routing import Rule

from access_control.permissions import Permission
from medchat.api.operation_refusals import EXTRA as _EXTRA
from medchat.schemas.common import TEXT_PATTERN, StrictSchema
from medchat.web.guard import declared_permission
from medchat.web.throttling import throttles_of

BEARER = "bearerAuth"
_ERROR = {"$ref": "#/components/schemas/Error"}
_JSON = "application/json"
_RETRY_AFTER = {"Retry-After": {"$ref": "#/components/headers/Retry-After"}}
#: Headers an error answer always carries (``medchat.web.errors``), by status.
_ERROR_HEADERS = {
    401: {"WWW-Authenticate": {"$ref": "#/components/headers/WWW-Authenticate"}},
    429: _RETRY_AFTER,
    503: _RETRY_AFTER,
}

#: What every operation of a kind can answer; ``_EXTRA`` adds the codes of one operation.
_GENERIC = {
    400: "Malformed body: not UTF-8 JSON, nested deeper than 32 levels, or a lone surrogate "
    "(`bad_request`).",
    401: "No valid access token: missing, expired or revoked (`not_authenticated`, "
    "`invalid_token`).",
    403: "Signed in but not allowed: another role (`forbidden`), no two-factor session "
    "(`mfa_required`), outside the staff networks (`network_not_allowed`).",
    404: "No such resource, or not yours (`not_found`): never tells which.",
    409: "Stored data failed its integrity check (`key_integrity_failed`, "
    "`row_integrity_failed`): nothing was done.",
    413: "The body is larger than the configured limit (`payload_too_large`).",
    415: "Unsupported media type (`unsupported_media_type`).",
    422: "A field, parameter or header is invalid (`validation_error`); `details` names each "
    "one with its messages.",
    429: "Too many requests (`rate_limited`); `Retry-After` says when to try again.",
    503: "A dependency (database, rate-limit storage, key files) is down, or the role keys are "
    "not initialised (`dependency_down`, `keys_not_initialized`); retry after `Retry-After`.",
}


_BINARY = {"schema": {"type": "string", "format": "binary"}}
_DOWNLOAD_TYPES = ("application/pdf", "image/png", "image/jpeg", "image/heic")
_DISPOSITION = {
    "Content-Disposition": {
        "description": "`attachment` with the file name: save it, never render it.",
        "schema": {"type": "string"},
        "required": True,
    }
}
_DOWNLOAD = {
    "200": {
        "description": "The file's bytes, typed by their content, as a download.",
        "headers": _DISPOSITION,
        "content": dict.fromkeys(_DOWNLOAD_TYPES, _BINARY),
    }
}
#: A FHIR R4 Bundle of type collection: what ``medchat.schemas.fhir_bundle.bundle`` returns.
FHIR_BUNDLE = {
    "type": "object",
    "description": "A FHIR R4 Bundle of type collection: the Patient, then one Communication "
    "per message (http://hl7.org/fhir/R4/bundle.html).",
    "required": ["resourceType", "type", "entry"],
    "properties": {
        "resourceType": {"const": "Bundle"},
        "id": {"type": "string"},
        "type": {"const": "collection"},
        "timestamp": {"type": "string"},
        "meta": {"type": "object"},
        "entry": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["fullUrl", "resource"],
                "properties": {
                    "fullUrl": {"type": "string"},
                    "resource": {
                        "type": "object",
                        "required": ["resourceType"],
                        "properties": {"resourceType": {"type": "string"}},
                    },
                },
            },
        },
    },
}
#: The signed archive bundle (``medchat.archive.bundle``), format medchat-archive-export/v1.
ARCHIVE_BUNDLE = {
    "type": "object",
    "description": "Signed with the key of `GET /api/v1/archive/public-key`; "
    "`medchat archive verify-bundle` checks it. Served in its canonical bytes: keep them.",
    "required": ["format", "record", "conversation", "signing_key", "signature"],
    "properties": {
        "format": {"const": "medchat-archive-export/v1"},
        "signature": {"type": "string"},
        "signing_key": {"type": "object"},
        "record": {"type": "object"},
        "conversation": {"type": "object"},
    },
}
_REPLAYED = {
    "Idempotent-Replayed": {
        "description": "`true` when this is the first answer replayed for an "
        "`Idempotency-Key` (nothing new was created).",
        "schema": {"type": "string", "enum": ["true"]},
    }
}
_ROTATION_DUE = {
    "Medchat-Rotation-Due": {
        "description": "The role keys now due for rotation (`medchat keys rotate`), comma "
        "separated, when the revoked account held any.",
        "schema": {"type": "string"},
    }
}

#: Success answers the schemas cannot describe (media types, headers), merged by endpoint.
_SUCCESS: dict[str, dict[str, Any]] = {
    "member.export": {
        "200": {
            "headers": _DISPOSITION,
            "content": {"application/fhir+json": {"schema": FHIR_BUNDLE}},
        }
    },
    "attachments.download_attachment": _DOWNLOAD,
    "attachments.download_clinician_attachment": _DOWNLOAD,
    "compliance.attachment": _DOWNLOAD,
    "compliance.export": {
        "200": {
            "description": "The signed bundle, as a download.",
            "headers": _DISPOSITION,
            "content": {_JSON: {"schema": ARCHIVE_BUNDLE}},
        }
    },
    "conversations.start": {"201": {"headers": _REPLAYED}},
    "conversations.send": {"201": {"headers": _REPLAYED}},
    "clinician.reply": {"201": {"headers": _REPLAYED}},
    "attachments.upload_attachment": {"201": {"headers": _REPLAYED}},
    "attachments.upload_clinician_attachment": {"201": {"headers": _REPLAYED}},
    "colleagues.revoke_physician_key": {"204": {"headers": _ROTATION_DUE}},
    "colleagues.revoke_archive_key": {"204": {"headers": _ROTATION_DUE}},
    "admin.disable_account": {"204": {"headers": _ROTATION_DUE}},
}

#: Operations that read no stored row an integrity check could refuse.
_NO_STORED_STATE = frozenset(
    {"compliance.public_key", "auth.password_reset", "member.consent_text", "service.service"}
)


def _merge(target: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


def _error(status: int, endpoint: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    text = _GENERIC[status]
    extra = _EXTRA.get(endpoint, {}).get(status)
    if extra:
        text = f"{text} Here also: {extra}."
    response: dict[str, Any] = {"description": text, "content": {_JSON: {"schema": _ERROR}}}
    if headers:
        response["headers"] = headers
    return response


def error_statuses(endpoint: str, view: Any, rule: Rule, operation: Mapping[str, Any]) -> set[int]:
    """The error statuses one operation can answer (see the module's docstring)."""
    permission = declared_permission(view)
    statuses = {503}
    if throttles_of(view):
        statuses.add(429)
    if permission is not Permission.PUBLIC:
        statuses |= {401, 403}
    if endpoint not in _NO_STORED_STATE:
        statuses.add(409)
    if rule.arguments:
        statuses.add(404)
    content = (operation.get("requestBody") or {}).get("content") or {}
    if _JSON in content:
        statuses |= {400, 413, 422}
    if "multipart/form-data" in content:
        statuses |= {400, 413, 415, 422}
    if operation.get("parameters") or "422" in operation.get("responses", {}):
        statuses.add(422)
    statuses |= set(_EXTRA.get(endpoint, {}))
    return statuses


class ContractPlugin(BasePlugin):
    """Security, error responses and success extras of every operation (module docstring);
    schema-level rules a marshmallow schema declares in ``Meta.json_schema``."""

    def __init__(self, app: Flask) -> None:
        self._app = app

    def init_spec(self, spec: APISpec) -> None:
        super().init_spec(spec)
        spec.components.security_scheme(
            BEARER,
            {
                "type": "http",
                "scheme": "bearer",
                "description": "The `access_token` of `POST /api/v1/auth/token`.",
            },
        )
        spec.components.header(
            "Retry-After",
            {
                "description": "Seconds to wait before trying again.",
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
                "required": True,
            },
        )
        spec.components.header(
            "WWW-Authenticate",
            {
                "description": 'RFC 6750: `Bearer realm="medchat"`, with '
                '`error="invalid_token"` when the token sent was refused.',
                "schema": {"type": "string", "pattern": "^Bearer "},
                "required": True,
            },
        )

    def schema_helper(
        self, name: str, definition: Any, schema: Any = None, **kwargs: Any
    ) -> dict[str, Any] | None:
        meta = getattr(schema, "Meta", None)
        extra = getattr(meta, "json_schema", None)
        return dict(extra) if extra else None

    def operation_helper(
        self,
        path: str | None = None,
        operations: dict[str, Any] | None = None,
        rule: Rule | None = None,
        **kwargs: Any,
    ) -> None:
        if rule is None or not operations:
            return
        endpoint = rule.endpoint
        view = self._app.view_functions[endpoint]
        permission = declared_permission(view)
        for operation in operations.values():
            _no_null_parameters(operation)
            # flask-smorest keys responses by int, a manual doc by str: one key per status.
            responses = {str(k): v for k, v in operation.get("responses", {}).items()}
            operation["responses"] = responses
            responses.pop("default", None)
            _merge(responses, _SUCCESS.get(endpoint, {}))
            if permission is not Permission.PUBLIC:
                operation["security"] = [{BEARER: []}]
            for status in sorted(error_statuses(endpoint, view, rule, operation)):
                responses[str(status)] = _error(status, endpoint, _ERROR_HEADERS.get(status))


def _no_null_parameters(operation: dict[str, Any]) -> None:
    """A query string or a header holds text, never JSON's null: an optional parameter
    (``load_default=None``) is absent, not null, and has no default to show."""
    for parameter in operation.get("parameters", []):
        schema = parameter.get("schema") if isinstance(parameter, dict) else None
        if not isinstance(schema, dict):
            continue
        kinds = schema.get("type")
        if isinstance(kinds, list) and "null" in kinds:
            rest = [kind for kind in kinds if kind != "null"]
            schema["type"] = rest[0] if len(rest) == 1 else rest
        if "default" in schema and schema["default"] is None:
            del schema["default"]


def text_pattern(converter: Any, field: ma.fields.Field, ret: dict[str, Any], **_: Any) -> dict:
    """The text rule of request schemas (``StrictSchema``: no control characters) as a
    pattern, on each of their strings that has no pattern or choices of its own."""
    if not isinstance(field, ma.fields.String) or not isinstance(field.parent, StrictSchema):
        return {}
    if "pattern" in ret or "enum" in ret:
        return {}
    return {"pattern": TEXT_PATTERN}


def init_api(api: Any) -> None:
    """What needs the spec's marshmallow converter (it exists once the ``Api`` does)."""
    api.ma_plugin.converter.add_attribute_function(text_pattern)
