"""Reading API answers in tests."""

from __future__ import annotations

from typing import Any


def error_code(response: Any) -> str:
    """The ``code`` of an error body (``{"error": {"code", "message", ...}}``, API.md)."""
    return response.get_json()["error"]["code"]  # type: ignore[no-any-return]
