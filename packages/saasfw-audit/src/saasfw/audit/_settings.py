"""``AuditSettings``: the audit section of the service settings, and what it builds."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from saasfw.audit._delivery import Delivery, DeliveryPolicy
from saasfw.audit._errors import AuditConfigError
from saasfw.audit._event import ActorProvider, CorrelationIdProvider, TraceIdsProvider
from saasfw.audit._retention import LegalHold

if TYPE_CHECKING:
    from saasfw.audit._crypto import FieldCipher, Keyring
    from saasfw.audit._logger import AuditLogger
    from saasfw.audit._sink import AuditSink


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileSinkSettings(_Section):
    """The JSON Lines file sink (the anchor of the hash chain).

    ``policy`` says what happens while the file cannot be written (a full disk, an I/O
    error): ``fail_closed`` (default) refuses new events with ``AuditUnavailableError``;
    ``spill`` keeps accepting them into ``spill_path`` (put it on another volume) and
    replays them into the file once it can be written; ``block`` makes record calls wait
    once the buffers are full.
    """

    path: Path
    max_bytes: int = Field(default=256 * 1024 * 1024, ge=0)
    rotate_seconds: float = Field(default=0, ge=0)
    fsync: bool = True
    policy: Literal["fail_closed", "spill", "block"] = "fail_closed"
    buffer_events: int = Field(default=10_000, ge=1)
    spill_path: Path | None = None
    spill_max_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    retry_initial: float = Field(default=0.05, gt=0)
    retry_max: float = Field(default=5.0, gt=0)


class CheckpointSettings(_Section):
    """Ed25519-signed checkpoints, written to a file apart from the log."""

    path: Path
    signing_key: SecretStr | None = None
    signing_key_file: Path | None = None
    every_records: int = Field(default=1000, ge=1)
    every_seconds: float = Field(default=60.0, gt=0)


class EncryptionSettings(_Section):
    """AES-256-GCM field encryption: keys by id (base64 or hex), the active one encrypts."""

    keys: dict[str, SecretStr] = Field(default_factory=dict)
    key_files: dict[str, Path] = Field(default_factory=dict)
    active_key_id: str | None = None
    fields: list[str] = Field(default_factory=list)
    subject_keystore: Path | None = None
    # Subject keys (crypto-shredding): "file" is subject_keystore, one file per process
    # (development); "sql" is one table every instance shares (a fleet). The SQL store
    # wraps each key with the KEKs below, or with the field keyring when none is given.
    subject_keys: Literal["file", "sql"] | None = None
    subject_keys_url: SecretStr | None = None
    subject_keys_schema: str | None = None
    subject_keys_migrate: bool = True
    subject_keys_max_staleness: float = Field(default=1.0, ge=0)
    subject_keys_key_ttl: float = Field(default=60.0, ge=0)
    kek_keys: dict[str, SecretStr] = Field(default_factory=dict)
    kek_key_files: dict[str, Path] = Field(default_factory=dict)
    active_kek_id: str | None = None


class SyslogSettings(_Section):
    """RFC 5424 syslog to a SIEM, over UDP, TCP (octet counting) or TLS."""

    host: str
    port: int = Field(default=514, ge=1, le=65535)
    transport: Literal["udp", "tcp", "tls"] = "tcp"
    format: Literal["json", "cef"] = "json"
    app_name: str = "saasfw"
    ca_file: Path | None = None
    policy: DeliveryPolicy = DeliveryPolicy.SPILL
    buffer_events: int = Field(default=10_000, ge=1)
    spill_path: Path | None = None
    spill_max_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    retry_initial: float = Field(default=0.05, gt=0)
    retry_max: float = Field(default=5.0, gt=0)


class SqlSinkSettings(_Section):
    """The SQL sink: ``audit_events`` through SQLAlchemy (asyncpg / aiosqlite)."""

    url: SecretStr
    schema_name: str | None = None
    migrate: bool = True
    policy: DeliveryPolicy = DeliveryPolicy.BLOCK
    buffer_events: int = Field(default=10_000, ge=1)
    spill_path: Path | None = None
    spill_max_bytes: int = Field(default=64 * 1024 * 1024, ge=0)


class OutboxSettings(_Section):
    """The transactional outbox: events staged in the business transaction, then relayed.

    Past ``max_depth`` waiting events, or once the oldest has waited ``max_age`` seconds,
    staging refuses (503 with Retry-After): backpressure, nothing is dropped. At shutdown
    the relay delivers what waits for up to ``drain_timeout`` seconds; the rest stays staged
    for the next start or another replica.
    """

    enabled: bool = True
    max_depth: int = Field(default=100_000, ge=1)
    max_age: float = Field(default=300.0, gt=0)
    drain_timeout: float = Field(default=5.0, gt=0)


class RetentionSettings(_Section):
    """Scheduled purges of old audit records (off until ``keep_days`` is set).

    Run by the service's job scheduler: the SQL sink's table, shared by the fleet, once
    per ``every`` seconds across all replicas; each replica's own file log by that
    replica (rotated segments only). Records a legal hold covers are kept.
    """

    keep_days: float | None = Field(default=None, gt=0)
    every: float = Field(default=86_400.0, gt=0)
    holds: list[LegalHold] = Field(default_factory=list)


class AuditSettings(_Section):
    """Settings of saasfw.audit (env prefix ``SAASFW_AUDIT__`` under the umbrella)."""

    enabled: bool = True
    producer_id: str | None = None
    integrity: bool = True
    chain_key: SecretStr | None = None
    chain_key_file: Path | None = None
    file: FileSinkSettings | None = None
    checkpoints: CheckpointSettings | None = None
    console: bool = False
    syslog: SyslogSettings | None = None
    sql: SqlSinkSettings | None = None
    encryption: EncryptionSettings = Field(default_factory=EncryptionSettings)
    queue_size: int = Field(default=65_536, ge=1)
    batch_size: int = Field(default=512, ge=1)
    batch_interval: float = Field(default=0.05, gt=0)
    queue_full: Literal["block", "drop"] = "block"
    durable: bool = False
    durable_timeout: float = Field(default=30.0, gt=0)
    shutdown_timeout: float = Field(default=10.0, gt=0)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)

    def chain_key_bytes(self) -> bytes | None:
        """The chain key from ``chain_key`` or ``chain_key_file``, or None."""
        from saasfw.audit._crypto import decode_key

        if self.chain_key is not None:
            return decode_key(self.chain_key.get_secret_value(), where="audit.chain_key")
        if self.chain_key_file is not None:
            return decode_key(_read(self.chain_key_file), where="audit.chain_key_file")
        return None

    def keyring(self) -> Keyring | None:
        """The field-encryption keyring, or None when no key is configured."""
        from saasfw.audit._crypto import Keyring, decode_key

        enc = self.encryption
        keys = {
            kid: decode_key(v.get_secret_value(), where=f"audit.encryption.keys.{kid}")
            for kid, v in enc.keys.items()
        }
        for kid, path in enc.key_files.items():
            keys[kid] = decode_key(_read(path), where=f"audit.encryption.key_files.{kid}")
        if not keys:
            return None
        if enc.active_key_id is None:
            raise AuditConfigError(
                "set active_key_id to the key that encrypts", where="audit.encryption"
            )
        return Keyring(keys, enc.active_key_id)

    def field_cipher(self) -> FieldCipher | None:
        from saasfw.audit._crypto import FieldCipher
        from saasfw.audit._subject_key_settings import build_subject_key_store

        ring = self.keyring()
        if ring is None:
            return None
        return FieldCipher(ring, build_subject_key_store(self, keyring=ring))

    def build_sinks(self) -> list[Delivery]:
        """The configured sinks with their delivery policies."""
        deliveries: list[Delivery] = []
        if self.file is not None:
            from saasfw.audit._chain import CheckpointWriter, load_signing_key
            from saasfw.audit._file import FileSink

            checkpoints = None
            cp = self.checkpoints
            if cp is not None:
                if cp.signing_key is not None:
                    material: str | bytes = cp.signing_key.get_secret_value()
                elif cp.signing_key_file is not None:
                    material = _read(cp.signing_key_file)
                else:
                    raise AuditConfigError(
                        "checkpoints need signing_key or signing_key_file",
                        where="audit.checkpoints",
                    )
                checkpoints = CheckpointWriter(
                    cp.path,
                    load_signing_key(material),
                    every_records=cp.every_records,
                    every_seconds=cp.every_seconds,
                )
            sink = FileSink(
                self.file.path,
                max_bytes=self.file.max_bytes,
                rotate_seconds=self.file.rotate_seconds,
                fsync=self.file.fsync,
                checkpoints=checkpoints,
            )
            f = self.file
            deliveries.append(
                Delivery(
                    sink,
                    f.policy,
                    buffer_events=f.buffer_events,
                    spill_path=f.spill_path,
                    spill_max_bytes=f.spill_max_bytes,
                    retry_initial=f.retry_initial,
                    retry_max=f.retry_max,
                )
            )
        if self.console:
            from saasfw.audit._console import ConsoleSink

            deliveries.append(Delivery(ConsoleSink(), DeliveryPolicy.DROP))
        if self.syslog is not None:
            from saasfw.audit._syslog import SyslogSink

            s = self.syslog
            deliveries.append(
                Delivery(
                    SyslogSink.from_settings(s),
                    s.policy,
                    buffer_events=s.buffer_events,
                    spill_path=s.spill_path,
                    spill_max_bytes=s.spill_max_bytes,
                    retry_initial=s.retry_initial,
                    retry_max=s.retry_max,
                )
            )
        if self.sql is not None:
            from saasfw.audit._sql import SqlSink

            q = self.sql
            deliveries.append(
                Delivery(
                    SqlSink(q.url.get_secret_value(), schema=q.schema_name, migrate=q.migrate),
                    q.policy,
                    buffer_events=q.buffer_events,
                    spill_path=q.spill_path,
                    spill_max_bytes=q.spill_max_bytes,
                )
            )
        return deliveries

    def build_logger(
        self,
        *,
        actor_provider: ActorProvider | None = None,
        correlation_id_provider: CorrelationIdProvider | None = None,
        trace_ids_provider: TraceIdsProvider | None = None,
        extra_sinks: Sequence[AuditSink | Delivery] = (),
    ) -> AuditLogger:
        """Build (not start) the logger these settings describe, wiring the ports.

        Fails closed: with ``integrity`` on (the default) a file sink needs a chain key and
        signed checkpoints; encrypted fields need a keyring.
        """
        from saasfw.audit._logger import AuditLogger

        for problem in audit_production_problems(self):
            raise AuditConfigError(problem, where="audit")
        chain_key = self.chain_key_bytes() if self.integrity else None
        sinks: list[AuditSink | Delivery] = [*self.build_sinks(), *extra_sinks]
        return AuditLogger(
            sinks,
            producer_id=self.producer_id,
            chain_key=chain_key,
            cipher=self.field_cipher(),
            encrypted_fields=self.encryption.fields,
            actor_provider=actor_provider,
            correlation_id_provider=correlation_id_provider,
            trace_ids_provider=trace_ids_provider,
            queue_size=self.queue_size,
            batch_size=self.batch_size,
            batch_interval=self.batch_interval,
            queue_full=self.queue_full,
            durable=self.durable,
            durable_timeout=self.durable_timeout,
        )


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes().strip()
    except OSError as exc:
        raise AuditConfigError(f"cannot read key file: {exc.strerror}", where=str(path)) from None


def audit_production_problems(settings: AuditSettings) -> list[str]:
    """Production safety rule: what is unsafe in these settings (empty when fine)."""
    problems: list[str] = []
    if not settings.enabled:
        return problems
    if settings.integrity and settings.file is not None:
        if settings.chain_key is None and settings.chain_key_file is None:
            problems.append("integrity is on but neither chain_key nor chain_key_file is set")
        if settings.checkpoints is None:
            problems.append(
                "integrity is on but checkpoints are not configured: truncation of the log's "
                "tail and re-chaining could not be detected"
            )
    enc = settings.encryption
    if enc.fields and not (enc.keys or enc.key_files):
        problems.append("encryption.fields are set but no encryption key is configured")
    if enc.subject_keys == "sql" and enc.subject_keystore is not None:
        problems.append(
            "encryption.subject_keys is sql but subject_keystore (the file store) is set too: "
            "remove subject_keystore"
        )
    if enc.subject_keys == "sql" and enc.subject_keys_url is None and settings.sql is None:
        problems.append(
            "encryption.subject_keys is sql but no database is set: set "
            "encryption.subject_keys_url or audit.sql"
        )
    if (enc.kek_keys or enc.kek_key_files) and enc.active_kek_id is None:
        problems.append("encryption.kek_keys are set but active_kek_id is not")
    sections = (("file", settings.file), ("syslog", settings.syslog), ("sql", settings.sql))
    for name, section in sections:
        if (
            section is not None
            and section.policy == DeliveryPolicy.SPILL
            and section.spill_path is None
        ):
            problems.append(f"{name}.policy is spill but {name}.spill_path is not set")
    return problems


def audit_fleet_problems(settings: AuditSettings) -> list[str]:
    """The rule for several instances: what breaks once more than one may run (or empty).

    Call it when a deployment may run more than one instance (replicas, autoscaling,
    a rolling deploy): a subject key store in a local file gives every instance its own
    keys, so an erasure on one would leave the subject readable on the others.
    """
    problems: list[str] = []
    if not settings.enabled:
        return problems
    enc = settings.encryption
    if enc.subject_keys != "sql" and enc.subject_keystore is not None:
        problems.append(
            "the subject key store is a local file per instance: an erasure on one instance "
            "would leave the subject readable on the others; set encryption.subject_keys: sql"
        )
    return problems
