"""medchat: secure messaging between health-insurance members and doctors.

``create_app`` is imported lazily so ``access_control`` can import ``medchat.db``,
``medchat.models`` and ``medchat.errors`` without pulling in the whole web application.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from medchat.app import create_app

        return create_app
    raise AttributeError(name)
