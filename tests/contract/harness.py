"""Schemathesis's engine (what ``schemathesis run`` drives) against the app, in process.

The app is called as WSGI (``schemathesis.openapi.from_wsgi``), with every phase (examples,
coverage, fuzzing, stateful) and every check on, ``max_response_time`` included. A run is
one role's: its access token on every request, except that each ``logout`` spends a token of
its own (a logout ends the session it is sent with). ``run_contract`` returns what the run
did (cases, checks, failures), so the test can assert that no check failed anywhere.

What the harness adds, and why:

- ``REMOTE_ADDR``: a WSGI server always sets it, werkzeug's test environ does not. Each
  request gets its own loopback address (inside the tests' staff networks), so the
  per-address sign-in limits, which every request of a run would otherwise exhaust in a
  second, leave the credential checks behind them reachable. The limits themselves stay on
  (429 is documented and accepted where a view is throttled).
- Three rules JSON Schema cannot state, each in the field's description (docs/api.md
  "What the document cannot say"): a new password must be strong, a birth date not in the
  future, an upload of an accepted type (its bytes). ``map_body`` makes a drawn value that
  the schema calls valid also meet the rule, as a client following the description would;
  a value the schema calls invalid is left alone, so negative cases stay negative.
- A fix for schemathesis 4.32's WSGI transport: the probes of ``ignored_auth`` pass
  ``max_redirects`` and friends on to werkzeug, which refuses them (a ``TypeError`` per
  probe, so the check would never run). They mean nothing in process and are dropped.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import schemathesis
from flask import Flask
from schemathesis import engine
from schemathesis.engine import Status, events
from schemathesis.hooks import GLOBAL_HOOK_DISPATCHER
from schemathesis.transport.wsgi import WSGITransport

from access_control.passwords import MIN_LENGTH, check_strength
from medchat.errors import WeakPassword
from tests.support.sample_files import pdf

OPENAPI = "/api/v1/openapi.json"
#: A password every strength rule accepts (it holds none of the test people's data).
STRONG_PASSWORD = "umber-quiver-atlas-lantern-77"
#: Fields that set a password (``medchat.schemas.auth._new_password``).
NEW_PASSWORD_FIELDS = ("password", "new_password")
NEW_PASSWORD_OPERATIONS = frozenset(
    {
        "POST /api/v1/auth/register",
        "POST /api/v1/auth/enroll",
        "POST /api/v1/auth/password",
        "POST /api/v1/auth/password-reset/confirm",
    }
)
_FULL_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def config(
    max_examples: int, max_steps: int, max_seconds: int, max_response_seconds: float, seed: int
) -> Any:
    """Every phase and every check; the size of the run is the fuzzing phase's examples and
    the stateful phase's steps, and ``max_seconds`` bounds it on a loaded machine (the
    engine stops there, reporting ``max_time``)."""
    return schemathesis.config.SchemathesisConfig.from_dict(
        {
            # Each run starts from nothing: no answers kept between runs (``.schemathesis/``).
            "cache": {"enabled": False},
            "max-time": max_seconds,
            "seed": seed,
            "generation": {"max-examples": max_examples},
            "checks": {"max_response_time": max_response_seconds},
            "phases": {"stateful": {"max-steps": max_steps}},
        }
    )


@dataclass
class RunResult:
    role: str
    cases: int = 0
    checks: int = 0
    failures: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    examples: dict[tuple[str, str, str], str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    operations: set[str] = field(default_factory=set)
    statuses: Counter[int] = field(default_factory=Counter)
    phases: dict[str, float] = field(default_factory=dict)
    stop_reason: str = ""

    def report(self) -> str:
        lines = [
            f"{self.role}: {self.cases} cases, {self.checks} checks, "
            f"{sum(self.failures.values())} failures, {len(self.errors)} errors, "
            f"{len(self.operations)} operations, statuses {dict(sorted(self.statuses.items()))}, "
            f"seconds per phase {self.phases}, stopped: {self.stop_reason}"
        ]
        for key, count in sorted(self.failures.items()):
            lines.append(f"  {count} x {' | '.join(key)}\n    {self.examples[key]}")
        lines.extend(f"  error: {error}" for error in self.errors)
        return "\n".join(lines)


def _each_request_from_its_own_address(app: Flask) -> None:
    inner = app.wsgi_app
    numbers = itertools.count(1)

    def with_address(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        n = next(numbers) % (1 << 24)
        environ.setdefault("REMOTE_ADDR", f"127.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255 or 1}")
        return inner(environ, start_response)

    app.wsgi_app = with_address  # type: ignore[method-assign]


@contextmanager
def _hooked(hook: Callable[..., Any]) -> Iterator[None]:
    """A global hook (``before_call`` has no per-schema form) for the length of one run."""
    schemathesis.hook(hook)
    try:
        yield
    finally:
        GLOBAL_HOOK_DISPATCHER.unregister(hook)


@contextmanager
def _wsgi_probes_fixed() -> Iterator[None]:
    original = WSGITransport.send

    def send(self: WSGITransport, case: Any, *, session: Any = None, **kwargs: Any) -> Any:
        for name in ("max_redirects", "verify", "cert", "proxies"):
            kwargs.pop(name, None)
        return original(self, case, session=session, **kwargs)

    WSGITransport.send = send  # type: ignore[method-assign]
    try:
        yield
    finally:
        WSGITransport.send = original  # type: ignore[method-assign]


def _schema_valid_text(value: Any) -> bool:
    return isinstance(value, str) and 1 <= len(value) <= 1024 and not _CONTROL.search(value)


def _strong(value: Any) -> Any:
    """A valid but weak new password becomes a strong one; anything else stays as drawn."""
    if not _schema_valid_text(value) or len(value) < MIN_LENGTH:
        return STRONG_PASSWORD if _schema_valid_text(value) else value
    try:
        check_strength(value)
    except WeakPassword:
        return STRONG_PASSWORD
    return value


def _not_in_future(value: Any) -> Any:
    if isinstance(value, str) and _FULL_DATE.fullmatch(value):
        try:
            if date.fromisoformat(value) > date.today():
                return "1990" + value[4:] if value[5:] != "02-29" else "1992-02-29"
        except ValueError:
            return value
    return value


#: A push service's endpoint and a browser's keys (a P-256 point, 16 bytes), as a browser
#: hands them over: what the field descriptions of the subscription ask for.
PUSH_SUBSCRIBE = "POST /api/v1/me/push-subscriptions"
PUSH_ENDPOINT = "https://fcm.googleapis.com/fcm/send/contract-test"
PUSH_KEYS = {
    "p256dh": "BEA4EuUQ_bu0NF13yj9jO1ZJdGkDIx5dqObaR48mtkQnv3oaiKYxyXNivg-"
    "LnqDr2DRmlmwM_HZMy9l-mNBsCkE",
    "auth": "AAECAwQFBgcICQoLDA0ODw",
}
_B64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")


def _push_subscription(body: dict[str, Any]) -> None:
    """A schema-valid endpoint becomes a push service's; schema-valid keys a real pair."""
    endpoint = body.get("endpoint")
    if isinstance(endpoint, str) and 12 <= len(endpoint) <= 2048 and not _CONTROL.search(endpoint):
        body["endpoint"] = PUSH_ENDPOINT
    keys = body.get("keys")
    if isinstance(keys, dict):
        for name, (low, high) in (("p256dh", (86, 88)), ("auth", (22, 24))):
            value = keys.get(name)
            if isinstance(value, str) and low <= len(value) <= high and _B64URL.fullmatch(value):
                keys[name] = PUSH_KEYS[name]


def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """The rules of the module docstring, applied to each case of every phase just before it
    is sent (a ``map_body`` hook would reach the fuzzing phase's cases only); schemathesis
    re-reads the case after this hook, so it judges the body as sent."""
    if isinstance(case.body, dict):
        case.body = map_body(context, case.body)


def map_body(context: Any, body: dict[str, Any]) -> dict[str, Any]:
    """A drawn body, with the rules JSON Schema cannot state met where the schema is."""
    label = f"{context.operation.method.upper()} {context.operation.path}"
    if label in NEW_PASSWORD_OPERATIONS:
        for name in NEW_PASSWORD_FIELDS:
            if name in body:
                body[name] = _strong(body[name])
    if "birth_date" in body:
        body["birth_date"] = _not_in_future(body["birth_date"])
    if label == PUSH_SUBSCRIBE:
        _push_subscription(body)
    upload = body.get("file")
    if isinstance(upload, bytes | bytearray):
        body["file"] = pdf("contract")
    elif hasattr(upload, "data") and isinstance(upload.data, bytes | bytearray):
        body["file"] = type(upload)(data=pdf("contract"))
    return body


class RoleAuth:
    """The role's access token; a logout gets one of ``spare`` (fresh sign-ins) instead, and
    once they are spent the last one again (dead by then: a logout with an ended session)."""

    def __init__(self, token: str, spare: list[str]) -> None:
        self.token = token
        self.spare = spare

    def get(self, case: Any, context: Any) -> str:
        if case.operation.path.endswith("/auth/logout"):
            return self.spare.pop() if len(self.spare) > 1 else self.spare[0]
        return self.token

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


def run_contract(
    app: Flask,
    role: str,
    auth: RoleAuth,
    *,
    max_examples: int,
    max_steps: int,
    max_seconds: int,
    max_response_seconds: float,
    seed: int,
) -> RunResult:
    """One role's run over every operation of the served document."""
    _each_request_from_its_own_address(app)
    schema = schemathesis.openapi.from_wsgi(
        OPENAPI,
        app,
        config=config(max_examples, max_steps, max_seconds, max_response_seconds, seed),
    )
    schema.auth.providers.append(auth)
    result = RunResult(role)
    started = 0.0
    with _wsgi_probes_fixed(), _hooked(before_call):
        for event in engine.from_schema(schema).execute():
            if isinstance(event, events.ScenarioFinished | events.FuzzScenarioFinished):
                _record(result, event.recorder)
            elif isinstance(event, events.PhaseStarted):
                started = event.timestamp
            elif isinstance(event, events.PhaseFinished):
                result.phases[event.phase.name.value] = round(event.timestamp - started, 1)
            elif isinstance(event, events.NonFatalError):
                result.errors.append(f"{event.label}: {event.value!r}")
            elif isinstance(event, events.FatalError):
                result.errors.append(f"fatal: {event.exception!r}")
            elif isinstance(event, events.EngineFinished):
                result.stop_reason = str(event.stop_reason)
    return result


def _record(result: RunResult, recorder: Any) -> None:
    result.cases += len(recorder.cases)
    for case_id, node in recorder.cases.items():
        result.operations.add(node.value.operation.label)
        interaction = recorder.interactions.get(case_id)
        if interaction is not None and interaction.response is not None:
            result.statuses[interaction.response.status_code] += 1
    for case_id, checks in recorder.checks.items():
        for check in checks:
            result.checks += 1
            if check.status != Status.FAILURE or check.failure_info is None:
                continue
            failure = check.failure_info.failure
            case = recorder.cases[case_id].value
            key = (case.operation.label, check.name, failure.title)
            result.failures[key] += 1
            if key not in result.examples:
                interaction = recorder.interactions.get(case_id)
                answer = interaction.response if interaction is not None else None
                result.examples[key] = (
                    f"{failure.message[:300]!r}; sent query={case.query} "
                    f"body={str(case.body)[:300]!r}; answer="
                    f"{answer.status_code if answer else None} "
                    f"{(answer.content[:300] if answer else b'')!r}"
                )
