"""The development start-up banner: pinned text, no secret value, only in development."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from fastapi import FastAPI

from saasfw.app import ServiceSettings
from saasfw.app._banner import banner_text, docs_paths, print_banner
from saasfw.app._docs_assets import install_offline_docs
from saasfw.app._effective import effective_settings
from saasfw.app._serve import StartupGuard

SNAPSHOT = """\
orders-service 1.2.3 is ready
  URL          http://127.0.0.1:<port>
  docs         http://127.0.0.1:<port>/docs
  redoc        http://127.0.0.1:<port>/redoc
  health       http://127.0.0.1:<port>/health/ready
  metrics      http://127.0.0.1:<port>/metrics
  environment  development
  data         <data>/orders_service
  dev secrets  <data>/orders_service/dev-secrets.json (generated keys, development only)
"""


def dev_settings(data_dir: Path, **update: object) -> ServiceSettings:
    return ServiceSettings.model_validate(
        {
            "service": "orders-service",
            "version": "1.2.3",
            "env": "development",
            "data_dir": str(data_dir),
            "http": {"host": "0.0.0.0", "port": 8731},
            **update,
        }
    )


def normalised(text: str, data_dir: Path, port: int) -> str:
    return text.replace(str(data_dir.absolute()), "<data>").replace(f":{port}", ":<port>")


def secret_values(data_dir: Path) -> list[str]:
    stored = json.loads((data_dir / "orders_service" / "dev-secrets.json").read_text("utf-8"))
    assert len(stored) >= 3
    return [str(value) for value in stored.values()]


def test_banner_text_is_pinned_and_names_the_secrets_file_not_its_values(tmp_path: Path) -> None:
    settings = dev_settings(tmp_path)
    effective_settings(settings)  # what create_app does: generates the development keys
    app = FastAPI(docs_url=None, redoc_url=None)
    install_offline_docs(app)

    plain = banner_text(settings, docs=docs_paths(app))
    coloured = banner_text(settings, docs=docs_paths(app), colour=True)

    assert normalised(plain, tmp_path, 8731) == SNAPSHOT
    assert "\x1b[" not in plain
    assert "\x1b[" in coloured
    for value in secret_values(tmp_path):
        assert value not in plain
        assert value not in coloured


def test_banner_follows_the_settings(tmp_path: Path) -> None:
    settings = dev_settings(
        tmp_path,
        http={"host": "::", "port": 9000, "root_path": "/api"},
        k8s={"health": {"prefix": "/probes"}},
        observability={"metrics": {"path": "/internal/metrics"}},
    )
    text = banner_text(settings, docs=("/docs", None))
    # root_path is the proxy's prefix: uvicorn adds it to local requests itself.
    assert "URL          http://[::1]:9000\n" in text
    assert "docs         http://[::1]:9000/docs\n" in text
    assert "redoc" not in text
    assert "health       http://[::1]:9000/probes/ready\n" in text
    assert "metrics      http://[::1]:9000/internal/metrics\n" in text
    assert "dev secrets  none generated (every key is configured)\n" in text

    quiet = dev_settings(
        tmp_path,
        components={"health": False},
        observability={"metrics": {"enabled": False}},
    )
    text = banner_text(quiet)
    assert "health" not in text
    assert "metrics" not in text
    assert "docs" not in text


def test_docs_paths_reads_fastapis_own_pages_too() -> None:
    assert docs_paths(FastAPI()) == ("/docs", "/redoc")
    assert docs_paths(FastAPI(openapi_url=None)) == (None, None)
    assert docs_paths(FastAPI(docs_url=None, redoc_url=None)) == (None, None)


@pytest.mark.parametrize("env", ["test", "staging", "production"])
def test_no_banner_outside_development(tmp_path: Path, env: str) -> None:
    settings = dev_settings(tmp_path).model_copy(update={"env": env})
    stream = io.StringIO()
    print_banner(settings, FastAPI(), stream)
    assert stream.getvalue() == ""


def test_no_colour_on_a_stream_that_is_not_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    stream = io.StringIO()
    print_banner(dev_settings(tmp_path), FastAPI(), stream)
    assert stream.getvalue().startswith("orders-service 1.2.3 is ready\n")
    assert "\x1b[" not in stream.getvalue()


async def run_lifespan(app: object) -> list[str]:
    """Start and stop ``app`` as a server does; the message types it answered with."""
    incoming = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    answered: list[str] = []

    async def receive() -> dict[str, str]:
        return next(incoming)

    async def send(message: dict[str, str]) -> None:
        answered.append(message["type"])

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    await app(scope, receive, send)  # type: ignore[operator]
    return answered


async def test_serve_runs_the_banner_once_after_start_up_and_survives_its_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []
    guard = StartupGuard(FastAPI(), on_started=lambda: calls.append("banner"))
    assert await run_lifespan(guard) == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    await run_lifespan(guard)
    assert calls == ["banner"]

    def broken() -> None:
        raise OSError("stdout is gone")

    failing = StartupGuard(FastAPI(), on_started=broken)
    assert (await run_lifespan(failing))[0] == "lifespan.startup.complete"
    assert failing.failure is None
    assert "start-up banner failed" in caplog.text
