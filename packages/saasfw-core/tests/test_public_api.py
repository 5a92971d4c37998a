import subprocess
import sys

import saasfw.core
import saasfw.core.outbox

EXPECTED = [
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

OUTBOX = [
    "OutboxMessage",
    "OutboxRelay",
    "OutboxStats",
    "OutboxTables",
    "RelayState",
    "StagedMessage",
    "outbox_stats",
    "outbox_tables",
    "stage_message",
]


def test_public_surface_is_pinned_and_sorted() -> None:
    assert saasfw.core.__all__ == EXPECTED
    assert saasfw.core.outbox.__all__ == OUTBOX
    for module in (saasfw.core, saasfw.core.outbox):
        for name in module.__all__:
            assert getattr(module, name) is not None, name


def test_importing_core_loads_nothing_heavy() -> None:
    code = (
        "import sys, saasfw.core; "
        "heavy = [m for m in ('sqlalchemy', 'starlette', 'fastapi', 'pydantic', 'asyncio')"
        " if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_advisory_lock_keys_are_stable_signed_64_bit_numbers() -> None:
    import hashlib

    key = saasfw.core.advisory_lock_key("saasfw.db.migrations:orders")
    digest = hashlib.sha256(b"saasfw.db.migrations:orders").digest()
    assert key == int.from_bytes(digest[:8], "big", signed=True)  # the value replicas share
    assert -(2**63) <= key < 2**63
    assert key != saasfw.core.advisory_lock_key("saasfw.audit.migrations:orders")
