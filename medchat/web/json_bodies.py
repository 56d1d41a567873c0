"""A JSON request body is UTF-8 JSON text, at most 32 levels deep, with no lone surrogates.

Checked once for every request, before any view, limiter key or schema reads the body: a
body nested thousands of levels deep made ``json.loads`` raise ``RecursionError`` (a 500
wherever it was parsed, the rate limiter's key function included), and a ``"\\ud800"`` escape
gave Python a string that no UTF-8 encoder, blind index or database driver accepts (RFC 8259
section 8.2: such text is not Unicode). Either answers 400 ``bad_request``, before any work is
done; nothing a schema describes is nested more than a few levels.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Flask, request

from medchat.errors import BadRequest

MAX_DEPTH = 32
_SURROGATE = re.compile("[\ud800-\udfff]")
_MESSAGE = "The request body is not valid JSON."


def _malformed(reason: str) -> BadRequest:
    return BadRequest(_MESSAGE, details={"json": [reason]})


def check_document(document: Any) -> None:
    """Raise ``BadRequest`` if ``document`` nests deeper than ``MAX_DEPTH`` or holds a lone
    surrogate in a key or a string. Iterative, so no depth can exhaust the stack here."""
    pending: list[tuple[Any, int]] = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                raise _malformed("A string holds a lone surrogate: not Unicode text.")
            continue
        if not isinstance(value, (dict, list)):
            continue
        if depth > MAX_DEPTH:
            raise _malformed(f"Nested deeper than {MAX_DEPTH} levels.")
        if isinstance(value, dict):
            pending.extend((key, depth) for key in value)
            pending.extend((item, depth + 1) for item in value.values())
        else:
            pending.extend((item, depth + 1) for item in value)


def _check_body() -> None:
    if not request.is_json:
        return
    raw = request.get_data(cache=True)
    if not raw.strip():
        return
    try:
        document = json.loads(raw.decode("utf-8"))
    except RecursionError as exc:
        raise _malformed(f"Nested deeper than {MAX_DEPTH} levels.") from exc
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError alike
        raise _malformed("Not UTF-8 JSON text.") from exc
    check_document(document)


def init_app(app: Flask) -> None:
    app.before_request(_check_body)
