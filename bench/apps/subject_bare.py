"""The two reference subjects: bare Starlette and bare FastAPI, a hello route and nothing else."""

from __future__ import annotations

from apps.subject import Subject


def starlette(limit: int, tmp: str) -> Subject:
    from apps.fullstack_starlette import app

    return Subject("starlette", app)


def fastapi(limit: int, tmp: str) -> Subject:
    from apps.observability_bare import app

    # Alone in its process FastAPI sees no tracer provider, so its native tracing is off.
    return Subject("fastapi", app)


def null(limit: int, tmp: str) -> Subject:
    from apps.drive import null_app

    return Subject("null", null_app)
