"""The projections service application factory."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI

from projections_service._projector import build_handlers
from projections_service._routes import router as totals_router
from projections_service._settings import ProjectionsSettings
from projections_service.migrations import VERSIONS_DIR
from saasfw.app import ServiceSettings, audit_outbox, create_app, load_settings, singletons_of
from saasfw.audit import AuditOutbox
from saasfw.config import LoadedSettings

__all__ = ["CONFIG_DIR", "SERVICE", "build_app", "load"]

SERVICE = "projections-service"
CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
"""The example's bundled configuration (``SAASFW_CONFIG_DIR`` points elsewhere)."""


def load(environ: dict[str, str] | None = None) -> LoadedSettings[ProjectionsSettings]:
    """The service's settings: ``config/``, ``.env``, ``SAASFW_*`` variables, secret files.

    Without ``SAASFW_ENV`` the example runs in ``development``.
    """
    source = os.environ if environ is None else environ
    config_dir = source.get("SAASFW_CONFIG_DIR", str(CONFIG_DIR))
    return load_settings(
        ProjectionsSettings,
        service=SERVICE,
        default_env="development",
        config_dir=config_dir,
        environ=source,
    )


def build_app(settings: ServiceSettings) -> FastAPI:
    """Compose the projections service: the totals API and the orders events' consumer."""
    if not isinstance(settings, ProjectionsSettings):
        raise TypeError("build_app needs ProjectionsSettings (see projections_service.load)")
    built: list[FastAPI] = []

    def running_audit() -> AuditOutbox | None:
        store = singletons_of(built[0])
        return store.get(audit_outbox) if store.has(audit_outbox) else None

    app = create_app(
        settings,
        routers=[totals_router],
        events=[build_handlers(settings.queue, running_audit)],
        migrations=VERSIONS_DIR,
        title="Projections service",
        description="Each customer's order totals, projected from the orders service's events.",
    )
    built.append(app)
    return app
