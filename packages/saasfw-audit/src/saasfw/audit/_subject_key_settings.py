"""``build_subject_key_store``: the subject key store (file or SQL) that the settings describe."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from saasfw.audit._crypto import Keyring, SubjectKeys, SubjectKeyStore, decode_key
from saasfw.audit._errors import AuditConfigError

if TYPE_CHECKING:
    from saasfw.audit._kms import KeyWrapper
    from saasfw.audit._settings import AuditSettings

__all__ = ["build_key_wrapper", "build_subject_key_store", "subject_keys_mode"]

_WHERE = "audit.encryption"


def subject_keys_mode(settings: AuditSettings) -> str | None:
    """``"sql"``, ``"file"`` or None: where the settings keep subject keys."""
    enc = settings.encryption
    if enc.subject_keys is not None:
        return enc.subject_keys
    return "file" if enc.subject_keystore is not None else None


def _read(path: Path, where: str) -> bytes:
    try:
        return path.read_bytes().strip()
    except OSError as exc:
        raise AuditConfigError(f"cannot read key file: {exc.strerror}", where=where) from None


def build_key_wrapper(settings: AuditSettings, keyring: Keyring) -> KeyWrapper:
    """The KEK port: ``encryption.kek_keys``/``kek_key_files``, else the field keyring."""
    from saasfw.audit._kms import LocalKeyWrapper

    enc = settings.encryption
    keks = {
        kid: decode_key(v.get_secret_value(), where=f"{_WHERE}.kek_keys.{kid}")
        for kid, v in enc.kek_keys.items()
    }
    for kid, path in enc.kek_key_files.items():
        where = f"{_WHERE}.kek_key_files.{kid}"
        keks[kid] = decode_key(_read(path, where), where=where)
    if not keks:
        return LocalKeyWrapper(keyring)
    if enc.active_kek_id is None:
        raise AuditConfigError("set active_kek_id to the KEK that wraps new keys", where=_WHERE)
    return LocalKeyWrapper(Keyring(keks, enc.active_kek_id))


def _location(settings: AuditSettings, engine: Any) -> tuple[str, str | None]:
    enc = settings.encryption
    sink_schema = settings.sql.schema_name if settings.sql is not None else None
    if engine is not None:
        url = (
            engine if isinstance(engine, str) else engine.url.render_as_string(hide_password=False)
        )
        return url, enc.subject_keys_schema or sink_schema
    if enc.subject_keys_url is not None:
        return enc.subject_keys_url.get_secret_value(), enc.subject_keys_schema
    if settings.sql is not None:
        return settings.sql.url.get_secret_value(), enc.subject_keys_schema or sink_schema
    raise AuditConfigError(
        "subject_keys is sql but no database is given: set encryption.subject_keys_url "
        "(or audit.sql, whose database is then used)",
        where=_WHERE,
    )


def build_subject_key_store(
    settings: AuditSettings, engine: Any = None, *, keyring: Keyring | None = None
) -> SubjectKeys | None:
    """The subject key store ``settings.audit.encryption`` describes, or None.

    Args:
        settings: the audit settings.
        engine: the service's engine (a SQLAlchemy ``AsyncEngine``/``Engine``) or URL; the
            SQL store opens its own connections to that database. Default: the
            ``subject_keys_url`` setting, else the SQL sink's database.
        keyring: the field keyring (default: built from the settings).
    """
    mode = subject_keys_mode(settings)
    if mode is None:
        return None
    ring = keyring if keyring is not None else settings.keyring()
    if ring is None:
        raise AuditConfigError(
            "subject keys need an encryption key (encryption.keys)", where=_WHERE
        )
    enc = settings.encryption
    if mode == "file":
        if enc.subject_keystore is None:
            raise AuditConfigError(
                "subject_keys is file but subject_keystore (the file) is not set", where=_WHERE
            )
        return SubjectKeyStore(enc.subject_keystore, ring)
    from saasfw.audit._subject_keys import SqlSubjectKeyStore

    url, schema = _location(settings, engine)
    return SqlSubjectKeyStore(
        url,
        build_key_wrapper(settings, ring),
        schema=schema,
        migrate=enc.subject_keys_migrate,
        max_staleness=enc.subject_keys_max_staleness,
        key_ttl=enc.subject_keys_key_ttl,
    )
