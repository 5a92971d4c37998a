import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import saasfw.core
import saasfw.db
import saasfw.db.migrations

EXPECTED = [
    "ActorProvider",
    "AuditMixin",
    "Base",
    "BigIntPrimaryKey",
    "ConcurrentSessionUseError",
    "ConflictError",
    "CursorCodec",
    "Database",
    "DatabaseError",
    "DatabaseUnavailableError",
    "DbSettings",
    "DuplicateKeyError",
    "GuardedAsyncSession",
    "InvalidQueryError",
    "KeysetPage",
    "KeysetPageRequest",
    "MissingExtraError",
    "NotFoundError",
    "OffsetPage",
    "OffsetPageRequest",
    "PageQuery",
    "PagingPolicy",
    "Repository",
    "SchemaBehindError",
    "SchemaMismatchError",
    "SoftDeleteMixin",
    "SortKey",
    "StaleVersionError",
    "TenantMixin",
    "TenantProvider",
    "TenantScopeError",
    "TimestampMixin",
    "UUIDPrimaryKey",
    "UnitOfWork",
    "UtcDateTime",
    "VersionMixin",
    "__version__",
    "install_exception_handlers",
    "page_query",
    "problem_response",
    "production_problems",
    "provision_postgres_service",
    "utcnow",
    "uuid7",
]


def test_public_surface_is_pinned_and_sorted() -> None:
    assert saasfw.db.__all__ == sorted(saasfw.db.__all__)
    assert saasfw.db.__all__ == EXPECTED
    for name in saasfw.db.__all__:
        if name in DEPRECATED:
            continue
        assert hasattr(saasfw.db, name), name


DEPRECATED = {"ActorProvider"}


def test_actor_provider_is_a_deprecated_alias_of_cores_actor_id_provider() -> None:
    # audit's ActorProvider returns an Actor; db's port only an id, hence the core name.
    with pytest.warns(DeprecationWarning, match=r"saasfw\.core\.ActorIdProvider") as caught:
        from saasfw.db import ActorProvider
    assert ActorProvider is saasfw.core.ActorIdProvider
    assert caught[0].filename == __file__  # points at the importing line, not saasfw.db
    with pytest.raises(AttributeError, match="NoSuchName"):
        _ = saasfw.db.NoSuchName  # type: ignore[attr-defined]


def test_migrations_surface_is_pinned() -> None:
    assert saasfw.db.migrations.__all__ == [
        "DEFAULT_LOCK_TIMEOUT",
        "MIGRATE_COMMAND",
        "MigrationTarget",
        "SchemaState",
        "SchemaStatus",
        "SchemaVersionCheck",
        "main",
        "migration_config",
        "migration_lock_key",
        "prepare_schema",
        "schema_status",
        "upgrade_to_head",
    ]
    for name in saasfw.db.migrations.__all__:
        assert hasattr(saasfw.db.migrations, name), name


def test_version_comes_from_distribution_metadata() -> None:
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert saasfw.db.__version__ == project["project"]["version"]


def test_errors_form_one_tree() -> None:
    for name in ("NotFoundError", "ConflictError", "DatabaseUnavailableError", "InvalidQueryError"):
        assert issubclass(getattr(saasfw.db, name), saasfw.db.DatabaseError)
    assert issubclass(saasfw.db.DuplicateKeyError, saasfw.db.ConflictError)
    assert issubclass(saasfw.db.StaleVersionError, saasfw.db.ConflictError)
    assert issubclass(saasfw.db.SchemaBehindError, saasfw.db.DatabaseUnavailableError)
    # A missing table is a deploy fault, not an outage: never a retry-later 503.
    assert issubclass(saasfw.db.SchemaMismatchError, saasfw.db.DatabaseError)
    assert not issubclass(saasfw.db.SchemaMismatchError, saasfw.db.DatabaseUnavailableError)
    assert issubclass(saasfw.db.ConcurrentSessionUseError, saasfw.db.DatabaseError)
    assert issubclass(saasfw.db.MissingExtraError, ImportError)


def test_importing_the_package_does_not_import_alembic() -> None:
    code = "import sys, saasfw.db; print('alembic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
