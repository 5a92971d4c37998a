import subprocess
import sys
import tomllib
from pathlib import Path

import saasfw.audit

EXPECTED = [
    "Actor",
    "ActorProvider",
    "AuditClosedError",
    "AuditConfigError",
    "AuditCryptoError",
    "AuditDeliveryError",
    "AuditError",
    "AuditEvent",
    "AuditIntegrityError",
    "AuditLogger",
    "AuditMiddleware",
    "AuditOutbox",
    "AuditPage",
    "AuditQuery",
    "AuditQueueFullError",
    "AuditSearch",
    "AuditSettings",
    "AuditSink",
    "AuditSinkError",
    "AuditStats",
    "AuditUnavailableError",
    "Auditor",
    "CheckpointSettings",
    "CheckpointWriter",
    "ConsoleSink",
    "CorrelationIdProvider",
    "Delivery",
    "DeliveryPolicy",
    "EncodedRecord",
    "EncryptionSettings",
    "FieldCipher",
    "FileSink",
    "FileSinkSettings",
    "Finding",
    "FlushReport",
    "InvalidCursorError",
    "KeyShreddedError",
    "KeyWrapper",
    "Keyring",
    "LegalHold",
    "LocalKeyWrapper",
    "MissingExtraError",
    "PurgeReport",
    "Resource",
    "RetentionSettings",
    "SecurityEventLike",
    "SinkStats",
    "SqlSink",
    "SqlSinkSettings",
    "SqlSubjectKeyStore",
    "SubjectKeyStore",
    "SubjectKeys",
    "SyslogSettings",
    "SyslogSink",
    "TraceIdsProvider",
    "VerifyReport",
    "__version__",
    "audit_fleet_problems",
    "audit_lifespan",
    "audit_production_problems",
    "build_subject_key_store",
    "create_audit_router",
    "purge_file_log",
    "purge_sql",
    "retention_jobs",
    "security_events_listener",
    "subject_keys_table",
    "upgrade_schema",
    "verify_log",
    "verify_logs",
    "verify_sql",
]


def test_public_surface_is_pinned_and_sorted() -> None:
    assert saasfw.audit.__all__ == sorted(saasfw.audit.__all__)
    assert saasfw.audit.__all__ == EXPECTED
    for name in EXPECTED:
        assert hasattr(saasfw.audit, name)


def test_version_comes_from_distribution_metadata() -> None:
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert saasfw.audit.__version__ == project["project"]["version"]


def test_every_error_derives_from_audit_error() -> None:
    errors = [getattr(saasfw.audit, n) for n in EXPECTED if n.endswith("Error")]
    assert all(issubclass(e, saasfw.audit.AuditError) for e in errors)
    assert issubclass(saasfw.audit.MissingExtraError, ImportError)


def test_import_is_cheap_no_heavy_dependencies_loaded() -> None:
    code = (
        "import sys, saasfw.audit; "
        "heavy = [m for m in ('sqlalchemy', 'cryptography', 'alembic', 'structlog', 'fastapi',"
        " 'starlette', 'pydantic', 'asyncio') if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
