"""saasfw.audit: tamper-evident, encrypted, lossless audit trail.

Importing this package is cheap: cryptography, SQLAlchemy and the web integrations are
imported only when used.
"""

from typing import TYPE_CHECKING

from saasfw.audit._asgi import AuditMiddleware, security_events_listener
from saasfw.audit._chain import CheckpointWriter
from saasfw.audit._console import ConsoleSink
from saasfw.audit._crypto import FieldCipher, Keyring, SubjectKeys, SubjectKeyStore
from saasfw.audit._delivery import Delivery, DeliveryPolicy
from saasfw.audit._errors import (
    AuditClosedError,
    AuditConfigError,
    AuditCryptoError,
    AuditDeliveryError,
    AuditError,
    AuditIntegrityError,
    AuditQueueFullError,
    AuditSinkError,
    AuditUnavailableError,
    KeyShreddedError,
    MissingExtraError,
)
from saasfw.audit._event import (
    Actor,
    ActorProvider,
    AuditEvent,
    CorrelationIdProvider,
    Resource,
    SecurityEventLike,
    TraceIdsProvider,
)
from saasfw.audit._file import FileSink
from saasfw.audit._logger import AuditLogger, AuditStats, FlushReport, SinkStats, audit_lifespan
from saasfw.audit._sink import AuditSink, EncodedRecord
from saasfw.audit._sql import SqlSink, upgrade_schema
from saasfw.audit._syslog import SyslogSink
from saasfw.audit._version import __version__
from saasfw.core import lazy_exports

if TYPE_CHECKING:
    from saasfw.audit._kms import KeyWrapper, LocalKeyWrapper
    from saasfw.audit._outbox import AuditOutbox
    from saasfw.audit._retention import (
        LegalHold,
        PurgeReport,
        purge_file_log,
        purge_sql,
        retention_jobs,
    )
    from saasfw.audit._router import Auditor, create_audit_router
    from saasfw.audit._search import AuditPage, AuditQuery, AuditSearch, InvalidCursorError
    from saasfw.audit._settings import (
        AuditSettings,
        CheckpointSettings,
        EncryptionSettings,
        FileSinkSettings,
        RetentionSettings,
        SqlSinkSettings,
        SyslogSettings,
        audit_fleet_problems,
        audit_production_problems,
    )
    from saasfw.audit._subject_key_settings import build_subject_key_store
    from saasfw.audit._subject_keys import SqlSubjectKeyStore, subject_keys_table
    from saasfw.audit._verify import Finding, VerifyReport, verify_log, verify_logs
    from saasfw.audit._verify_sql import verify_sql

# Settings pull in pydantic (~0.1 s); they are loaded on first access, not at import. So
# are the tools a running service rarely needs (search and its router, retention, the
# verifier): about 15 ms of every service's start-up otherwise.
_LAZY = {
    "AuditOutbox": "saasfw.audit._outbox",
    "AuditPage": "saasfw.audit._search",
    "AuditQuery": "saasfw.audit._search",
    "AuditSearch": "saasfw.audit._search",
    "Auditor": "saasfw.audit._router",
    "Finding": "saasfw.audit._verify",
    "InvalidCursorError": "saasfw.audit._search",
    "LegalHold": "saasfw.audit._retention",
    "PurgeReport": "saasfw.audit._retention",
    "VerifyReport": "saasfw.audit._verify",
    "create_audit_router": "saasfw.audit._router",
    "purge_file_log": "saasfw.audit._retention",
    "purge_sql": "saasfw.audit._retention",
    "retention_jobs": "saasfw.audit._retention",
    "verify_log": "saasfw.audit._verify",
    "verify_logs": "saasfw.audit._verify",
    "verify_sql": "saasfw.audit._verify_sql",
    "AuditSettings": "saasfw.audit._settings",
    "CheckpointSettings": "saasfw.audit._settings",
    "EncryptionSettings": "saasfw.audit._settings",
    "FileSinkSettings": "saasfw.audit._settings",
    "RetentionSettings": "saasfw.audit._settings",
    "SqlSinkSettings": "saasfw.audit._settings",
    "SyslogSettings": "saasfw.audit._settings",
    "audit_production_problems": "saasfw.audit._settings",
    "audit_fleet_problems": "saasfw.audit._settings",
    "KeyWrapper": "saasfw.audit._kms",
    "LocalKeyWrapper": "saasfw.audit._kms",
    "SqlSubjectKeyStore": "saasfw.audit._subject_keys",
    "build_subject_key_store": "saasfw.audit._subject_key_settings",
    "subject_keys_table": "saasfw.audit._subject_keys",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


__all__ = [
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
