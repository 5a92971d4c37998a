"""The projections service's Alembic revisions, run through saasfw.db's migration environment."""

from __future__ import annotations

from pathlib import Path

__all__ = ["VERSIONS_DIR"]

VERSIONS_DIR = Path(__file__).parent / "versions"
