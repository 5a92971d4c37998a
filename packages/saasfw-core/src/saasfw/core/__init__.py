"""saasfw.core: the few pieces every saasfw concern shares and none owns.

The RFC 9457 problem writer (raw ASGI), route-template resolution, the environment names,
the port protocols that cross packages, and the production-check type. It depends on
pydantic alone, and importing it loads not even that (only ``ProblemDetails`` does). The
transactional outbox is in :mod:`saasfw.core.outbox` behind the ``[sql]`` extra. Concern
packages import only themselves and this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from saasfw.core._checks import (
    PRODUCTION_ONLY,
    ProductionRule,
    RuleCheck,
    RuleContext,
    Violation,
)
from saasfw.core._environment import (
    DEVELOPMENT_ENVIRONMENTS,
    ENVIRONMENTS,
    Environment,
    is_development,
)
from saasfw.core._faces import lazy_exports
from saasfw.core._locks import advisory_lock_key, advisory_xact_lock, create_missing_tables
from saasfw.core._ports import ActorIdProvider, CorrelationIdProvider, TenantProvider
from saasfw.core._problem import (
    PROBLEM_CONTENT_TYPE,
    PROBLEM_TYPE_PREFIX,
    instance_of,
    problem_body,
    problem_bytes,
    problem_code,
    send_problem,
    use_correlation_id,
)
from saasfw.core._routes import UNMATCHED_ROUTE, route_template
from saasfw.core._version import __version__

if TYPE_CHECKING:
    from saasfw.core._schema import ProblemDetails

# pydantic loads only when the schema is asked for (OpenAPI), not with the writer.
_LAZY = {"ProblemDetails": "saasfw.core._schema"}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

__all__ = [
    "DEVELOPMENT_ENVIRONMENTS",
    "ENVIRONMENTS",
    "PROBLEM_CONTENT_TYPE",
    "PROBLEM_TYPE_PREFIX",
    "PRODUCTION_ONLY",
    "UNMATCHED_ROUTE",
    "ActorIdProvider",
    "CorrelationIdProvider",
    "Environment",
    "ProblemDetails",
    "ProductionRule",
    "RuleCheck",
    "RuleContext",
    "TenantProvider",
    "Violation",
    "__version__",
    "advisory_lock_key",
    "advisory_xact_lock",
    "create_missing_tables",
    "instance_of",
    "is_development",
    "lazy_exports",
    "problem_body",
    "problem_bytes",
    "problem_code",
    "route_template",
    "send_problem",
    "use_correlation_id",
]
