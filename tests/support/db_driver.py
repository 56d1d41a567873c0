"""Every driver statement of the code (``medchat.db_driver.DriverStatement``), by name.

Found by importing every module of the ``medchat`` package (its migrations aside) and keeping
the ``DriverStatement`` values defined at module level, alone or in a dict, so a statement
added anywhere joins the checks by itself. ``tests/unit/test_db_driver.py`` checks that each
is compiled as SQLAlchemy runs it and stays cached by psycopg;
``tests/unit/test_db_driver_transactions.py`` that those flagged to run outside a transaction
are plain reads.
"""

from __future__ import annotations

import importlib
import pkgutil

import medchat
from medchat.db_driver import DriverStatement


def driver_statements() -> dict[str, DriverStatement]:
    """Every driver statement the package defines at module level (alone or in a dict)."""
    found: dict[str, DriverStatement] = {}
    for info in pkgutil.walk_packages(medchat.__path__, "medchat."):
        if ".migrations" in info.name:
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            values = value.items() if isinstance(value, dict) else [(None, value)]
            for key, item in values:
                if isinstance(item, DriverStatement):
                    found[f"{info.name}.{name}" + ("" if key is None else f"[{key}]")] = item
    return found
