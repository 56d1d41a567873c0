"""The API's blueprint: flask-smorest's, with each view's argument schemas made once.

``Blueprint.arguments`` hands its schema to webargs as given, and webargs makes a new object
of a schema class at every request, which deep-copies the class's declared fields: about
0.1 ms per schema, two on a send (the body and the ``Idempotency-Key`` header), one on a page
read (``python -m bench.instructions``). A schema object holds no state of one request (the
API's schemas keep none: no ``context``, no hook that writes to ``self``), so one object made
when the view is declared serves every request, in every thread. The OpenAPI document is the
same either way: flask-smorest documents a class and its object alike.

Every API blueprint is this class (``tests/api/test_blueprints.py`` walks the application's
blueprints), so a new view's arguments are made once without anyone remembering to.
"""

from __future__ import annotations

from typing import Any

import flask_smorest


class Blueprint(flask_smorest.Blueprint):
    def arguments(self, schema: Any, *args: Any, **kwargs: Any) -> Any:
        """``flask_smorest.Blueprint.arguments`` with a schema class made into its object once."""
        return super().arguments(schema() if isinstance(schema, type) else schema, *args, **kwargs)
