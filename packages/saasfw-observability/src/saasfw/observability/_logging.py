"""structlog configuration with the standard library bridged into the same output."""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, TextIO

import structlog
from opentelemetry.trace import get_current_span
from structlog.typing import (
    EventDict,
    ExceptionRenderer,
    ExcInfo,
    Processor,
    WrappedLogger,
)

from saasfw.observability._context import correlation_id_var
from saasfw.observability._settings import ObservabilitySettings

REDACTED = "[REDACTED]"

# Loggers that install their own handlers (uvicorn does, from its logging config) and
# would otherwise print in their own format or twice.
_BRIDGED_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "gunicorn.error")
# The loggers the last configure_logging set to WARNING as console chatter.
_QUIETED: set[str] = set()


def add_request_context(
    logger: WrappedLogger, method_name: str, event_dict: EventDict
) -> EventDict:
    """Add ``correlation_id``, ``trace_id`` and ``span_id`` of the current request.

    Reads the contextvars at the moment the line is logged, so it is right for structlog
    and standard-library loggers alike, and explicit values a caller passed win.
    """
    correlation_id = correlation_id_var.get()
    if correlation_id is not None:
        event_dict.setdefault("correlation_id", correlation_id)
    context = get_current_span().get_span_context()
    if context.is_valid:
        event_dict.setdefault("trace_id", format(context.trace_id, "032x"))
        event_dict.setdefault("span_id", format(context.span_id, "016x"))
    return event_dict


class Redactor:
    """Replace the values of sensitive keys, at any depth, with ``[REDACTED]``.

    A key is sensitive when, lower-cased with ``-`` read as ``_``, it contains one of the
    configured words: ``password`` catches ``db_password``, ``token`` catches
    ``refresh_token``, ``authorization`` catches the header of that name.
    """

    def __init__(self, keys: Iterable[str]) -> None:
        words = sorted({k.lower().replace("-", "_") for k in keys if k})
        # With no words, a pattern that never matches keeps the hot path branch-free.
        self._pattern = re.compile("|".join(re.escape(w) for w in words) if words else "(?!)")
        self._enabled = bool(words)
        self._verdicts: dict[str, bool] = {}

    def _sensitive(self, key: str) -> bool:
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = self._pattern.search(key.lower().replace("-", "_")) is not None
            if len(self._verdicts) < 4096:  # bounded: keys can come from data
                self._verdicts[key] = verdict
        return verdict

    def _scrub(self, value: Any, depth: int) -> Any:
        if depth > 8:
            return value
        if isinstance(value, MutableMapping):
            return {
                k: REDACTED
                if isinstance(k, str) and self._sensitive(k)
                else self._scrub(v, depth + 1)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self._scrub(v, depth + 1) for v in value]
        return value

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        if not self._enabled:
            return event_dict
        for key, value in event_dict.items():
            if self._sensitive(key):
                event_dict[key] = REDACTED
            elif isinstance(value, MutableMapping | list | tuple):
                event_dict[key] = self._scrub(value, 1)
        return event_dict


class _SaasfwHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler this package installed, so reconfiguring replaces only it."""


def _drop_color_message(
    logger: WrappedLogger, method_name: str, event_dict: EventDict
) -> EventDict:
    """uvicorn attaches a copy of its message with terminal escape codes: never print it."""
    event_dict.pop("color_message", None)
    return event_dict


def colours_wanted(stream: Any) -> bool:
    """Whether to colour output to ``stream``: on a terminal only, never under ``NO_COLOR``.

    The rule of the development console (and of the umbrella's start-up banner): a pipe or a
    file gets plain text, and ``NO_COLOR`` (https://no-color.org) always wins.
    """
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _exception_formatter(show_locals: bool, colours: bool) -> ExceptionRenderer:
    """How the console prints a traceback. Never with frame locals unless asked: structlog's
    default (Rich's formatter, or better-exceptions) lists every local variable, SQL
    parameters and secrets included."""
    if importlib.util.find_spec("rich") is None:
        return structlog.dev.plain_traceback  # no locals whatever show_locals says
    rich_formatter = structlog.dev.RichTracebackFormatter(
        color_system="truecolor" if colours else None, show_locals=show_locals
    )

    def render(sio: TextIO, exc_info: ExcInfo) -> None:
        # An installed Rich older than this structlog expects (13.0 with structlog 25.1)
        # raises TypeError: the traceback is then printed plainly, never lost.
        try:
            rich_formatter(sio, exc_info)
        except TypeError:
            structlog.dev.plain_traceback(sio, exc_info)

    return render


def _quiet(names: Iterable[str], levels: Mapping[str, str]) -> None:
    """Set ``names`` (minus those with an explicit level) to WARNING; undo what an earlier
    call quieted that is no longer listed, so reconfiguring replaces the previous set."""
    wanted = {name for name in names if name not in levels}
    for name in _QUIETED - wanted:
        logging.getLogger(name).setLevel(logging.NOTSET)
    for name in wanted:
        logging.getLogger(name).setLevel(logging.WARNING)
    _QUIETED.clear()
    _QUIETED.update(wanted)


def configure_logging(settings: ObservabilitySettings) -> None:
    """Configure structlog and route every standard-library logger through the same renderer.

    JSON (one object per line) or console output per ``settings.log_format()``, UTC ISO
    timestamps, the request context and redaction on every line, whether it came from
    structlog or from a library logging through ``logging``. Calling it again replaces the
    previous configuration. The root logger's existing handlers are replaced, because two
    formats on one stream make the output unparseable.
    """
    log = settings.logging
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    redactor = Redactor(log.redact_keys)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        timestamper,
        add_request_context,
    ]
    json_output = settings.log_format() == "json"
    renderer: Processor
    if json_output:
        renderer = structlog.processors.JSONRenderer()
        final: list[Processor] = [structlog.processors.format_exc_info, redactor, renderer]
    else:
        stream = sys.stdout if log.stream == "stdout" else sys.stderr
        colours = colours_wanted(stream)
        renderer = structlog.dev.ConsoleRenderer(
            colors=colours, exception_formatter=_exception_formatter(log.show_locals, colours)
        )
        final = [redactor, renderer]

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder(), _drop_color_message],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )
    handler = _SaasfwHandler(sys.stdout if log.stream == "stdout" else sys.stderr)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(log.level)
    for name in _BRIDGED_LOGGERS:
        bridged = logging.getLogger(name)
        bridged.handlers.clear()
        bridged.propagate = True
    _quiet(() if json_output else log.quiet_loggers, log.levels)
    for name, level in log.levels.items():
        logging.getLogger(name).setLevel(level)


def flush_log_handlers() -> None:
    """Flush every handler on the root logger (called by the lifespan on exit)."""
    for handler in logging.getLogger().handlers:
        handler.flush()
