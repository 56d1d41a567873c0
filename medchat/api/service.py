"""``GET /api/v1/service``: what the app shows before a question is sent (issue 17, item 4).

Public: the app shows it before sign-in too, and it holds nothing about anyone
(``medchat.services.service_info``).
"""

from __future__ import annotations

from access_control.permissions import Permission
from medchat.api.blueprint import Blueprint
from medchat.schemas.service import ServiceSchema
from medchat.services.service_info import ServiceInfo, service_info
from medchat.web.context import runtime
from medchat.web.guard import requires

bp = Blueprint("service", __name__, url_prefix="/api/v1", description="Service")


@bp.route("/service", methods=["GET"])
@requires(Permission.PUBLIC)
@bp.response(200, ServiceSchema)
def service() -> ServiceInfo:
    """Service hours, whether open now, the expected response time, and the emergency notice
    a question must acknowledge (``emergency_notice``: its version)."""
    context = runtime()
    return service_info(context.settings, context.clock.now())
