"""The development start-up banner: where the service answers and where its local state is.

Printed once, when the application has started, and only in ``development``: the URL, the
docs, the health and metrics endpoints, the environment, the data directory and the file
holding the generated development keys (its path, never a value). Coloured only on a
terminal and never under ``NO_COLOR`` or a pipe, by the same rule as the console log.
"""

from __future__ import annotations

import ipaddress
import sys
from typing import Any, TextIO

from saasfw.app._devsecrets import DevSecrets
from saasfw.app._settings import ServiceSettings
from saasfw.observability import colours_wanted as _colours_wanted

__all__ = ["banner_text", "docs_paths", "print_banner"]

_BOLD, _DIM, _CYAN, _RESET = "\x1b[1m", "\x1b[2m", "\x1b[36m", "\x1b[0m"


def _display_host(host: str) -> str:
    """A host a browser on this machine can open (a wildcard address is not one)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:  # a name
        return host or "127.0.0.1"
    if address.version == 6:
        return "[::1]" if address.is_unspecified else f"[{host}]"
    return "127.0.0.1" if address.is_unspecified else host


def docs_paths(app: Any) -> tuple[str | None, str | None]:
    """(Swagger UI, ReDoc) paths the app serves: the offline docs, else FastAPI's own."""
    offline = getattr(getattr(app, "state", None), "saasfw_docs", None)
    if offline is not None:
        return offline.docs_url, offline.redoc_url
    if getattr(app, "openapi_url", None) is None:
        return None, None
    return getattr(app, "docs_url", None), getattr(app, "redoc_url", None)


def banner_text(
    settings: ServiceSettings,
    *,
    docs: tuple[str | None, str | None] = (None, None),
    colour: bool = False,
) -> str:
    """The banner for ``settings`` (as loaded, before keys are generated), one line per fact.

    Args:
        settings: the service's settings.
        docs: the (Swagger UI, ReDoc) paths the app serves (:func:`docs_paths`).
        colour: add terminal colour codes.
    """
    http = settings.http
    # The address this process answers on: uvicorn prefixes ``root_path`` to every path
    # itself (the proxy in front strips it), so it is no part of a local URL.
    base = f"http://{_display_host(http.host)}:{http.port}"
    rows: list[tuple[str, str]] = [("URL", base)]
    swagger, redoc = docs
    if swagger:
        rows.append(("docs", f"{base}{swagger}"))
    if redoc:
        rows.append(("redoc", f"{base}{redoc}"))
    if settings.components.health:
        rows.append(("health", f"{base}{settings.k8s.health.prefix}/ready"))
    metrics = settings.observability.metrics
    if settings.components.observability and metrics.enabled:
        rows.append(("metrics", f"{base}{metrics.path}"))
    rows.append(("environment", settings.env))
    state = settings.state_dir().absolute()
    rows.append(("data", str(state)))
    secrets = DevSecrets(state).path
    if secrets.exists():
        rows.append(("dev secrets", f"{secrets} (generated keys, development only)"))
    else:
        rows.append(("dev secrets", "none generated (every key is configured)"))
    title = f"{settings.service} {settings.version} is ready"
    width = max(len(label) for label, _ in rows)
    if not colour:
        lines = [title, *(f"  {label:<{width}}  {value}" for label, value in rows)]
    else:
        lines = [f"{_BOLD}{title}{_RESET}"]
        lines += [f"  {_DIM}{label:<{width}}{_RESET}  {_CYAN}{v}{_RESET}" for label, v in rows]
    return "\n".join(lines) + "\n"


def print_banner(settings: ServiceSettings, app: Any, stream: TextIO | None = None) -> None:
    """Print the banner to the console log's stream when ``settings.env`` is development."""
    if settings.env != "development":
        return
    if stream is None:
        stream = sys.stdout if settings.observability.logging.stream == "stdout" else sys.stderr
    text = banner_text(settings, docs=docs_paths(app), colour=_colours_wanted(stream))
    stream.write(text)
    stream.flush()
