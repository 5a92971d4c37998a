"""Console sink: each record as one structlog event (the renderer escapes control chars)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from saasfw.audit._sink import AuditSink, EncodedRecord


class ConsoleSink(AuditSink):
    """Emits ``audit_event`` log lines through structlog, one per record.

    The record is passed as one ``audit`` key, so whatever processors the application
    configured (JSON in production) render it; JSON and console renderers both escape
    newlines inside values, so a field can never start a second line.
    """

    name = "console"

    def __init__(self, logger: Any = None) -> None:
        if logger is None:
            import structlog

            logger = structlog.get_logger("saasfw.audit")
        self._logger = logger

    def write(self, batch: Sequence[EncodedRecord]) -> None:
        for r in batch:
            self._logger.info("audit_event", audit=r.record)
