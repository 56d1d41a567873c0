"""Looking for a secret in stored bytes whatever form it was written in.

A value can leak as itself or re-encoded on its way to storage: UTF-16 from a driver, JSON
escapes in an audit detail, hex (PostgreSQL's ``bytea`` output), base64 in a token or a
document. ``forms`` lists each form to search for; base64 is listed at the three offsets
the value can start at inside a longer encoded string.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable

from sqlalchemy import Engine, inspect, text


def _base64_cores(raw: bytes, *, urlsafe: bool) -> dict[str, bytes]:
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    name = "base64url" if urlsafe else "base64"
    cores = {}
    for offset in range(3):
        encoded = encode(bytes(offset) + raw).rstrip(b"=")
        # Characters mixing the padding or a partial last group depend on the neighbours.
        start = 4 if offset else 0
        end = len(encoded) - (4 if (offset + len(raw)) % 3 else 0)
        cores[f"{name}@{offset}"] = encoded[start:end]
    return cores


def forms(value: str | bytes) -> dict[str, bytes]:
    """Every form of ``value`` to look for (name → bytes), text and binary alike."""
    result: dict[str, bytes] = {}
    if isinstance(value, str):
        for variant in {value, value.lower(), value.upper()}:
            result[f"utf-8:{variant}"] = variant.encode("utf-8")
        result["utf-16-le"] = value.encode("utf-16-le")
        result["utf-16-be"] = value.encode("utf-16-be")
        result["json"] = json.dumps(value).encode("ascii")[1:-1]
        raw = value.encode("utf-8")
    else:
        result["raw"] = raw = value
    result["hex"] = raw.hex().encode()
    result["HEX"] = raw.hex().upper().encode()
    result.update(_base64_cores(raw, urlsafe=False))
    result.update(_base64_cores(raw, urlsafe=True))
    return {name: form for name, form in result.items() if len(form) >= 8}


def found_in(haystack: bytes, secrets: dict[str, str | bytes]) -> list[str]:
    """The names (and forms) of the secrets that occur in ``haystack``."""
    return [
        f"{name} ({form_name})"
        for name, value in secrets.items()
        for form_name, form in forms(value).items()
        if form in haystack
    ]


def stored_values(engine: Engine) -> Iterable[tuple[str, str, dict[str, object], object]]:
    """Every stored value as (table, column, row, value), read back through the driver."""
    with engine.connect() as connection:
        for table in inspect(connection).get_table_names():
            # Table names come from the schema itself, not from input.
            result = connection.execute(text(f'SELECT * FROM "{table}"'))
            for row in result.mappings():
                for column, value in row.items():
                    yield table, column, dict(row), value


def stored_blobs(engine: Engine) -> list[tuple[str, str, dict[str, object], bytes]]:
    """Every bytes value of every table and column, with the row it came from."""
    return [
        (table, column, row, bytes(value))
        for table, column, row, value in stored_values(engine)
        if isinstance(value, (bytes, memoryview))
    ]
