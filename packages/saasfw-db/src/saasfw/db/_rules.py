"""Production safety checks over ``DbSettings`` (plain callables the umbrella registers)."""

from __future__ import annotations

from saasfw.db._settings import DbSettings

_MIN_CURSOR_SECRET = 32


def production_problems(settings: DbSettings) -> list[str]:
    """What in ``settings`` is unsafe for production (empty: nothing).

    Messages name the setting and the fix, never a secret value. ``saasfw.app`` wraps this
    in a config ``ProductionRule``; standalone users can call it at start-up.
    """
    problems: list[str] = []
    if settings.url is None or settings.backend() == "sqlite":
        problems.append(
            "db.url: the embedded SQLite default is for development and single-instance "
            "use; set SAASFW_DB__URL to PostgreSQL"
        )
    secret = settings.cursor_secret
    if secret is None:
        problems.append(
            "db.cursor_secret is unset: cursors are signed with a random per-process key and "
            "break across replicas and restarts; set SAASFW_DB__CURSOR_SECRET"
        )
    elif len(secret.get_secret_value()) < _MIN_CURSOR_SECRET:
        problems.append(f"db.cursor_secret must be at least {_MIN_CURSOR_SECRET} characters")
    if settings.echo:
        problems.append("db.echo logs every statement: turn it off in production")
    if not settings.pool_pre_ping:
        problems.append("db.pool_pre_ping is off: dead connections surface as failed requests")
    if settings.statement_timeout is None:
        problems.append("db.statement_timeout is unset: a runaway query can hold a connection")
    return problems
