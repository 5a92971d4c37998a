"""saasfw's pytest plugin: a service's app under test, its development tokens, its settings.

pytest loads it by itself once ``saasfw`` is installed (the ``pytest11`` entry point). Tell
it how to build the service in ``[tool.pytest.ini_options]``::

    saasfw_app = "app:build"            # module:factory, factory(ServiceSettings) -> FastAPI
    saasfw_settings_model = "app:Settings"   # optional; default saasfw.app:ServiceSettings
    saasfw_service = "notes"            # optional; default [project].name of pyproject.toml

Fixtures (all function-scoped):

- ``saasfw_settings``: a factory, ``saasfw_settings(**overrides) -> ServiceSettings``, that
  loads the service's settings like the service does (``config/<service>/*.yaml`` under the
  rootdir) but in the ``test`` environment, on a fresh temporary data directory, with no
  ``.env`` file and none of the shell's ``SAASFW_*`` variables. ``overrides`` are settings
  in variable form without the prefix: ``tokens__access_ttl=60`` is
  ``SAASFW_TOKENS__ACCESS_TTL=60`` (strings as they are, anything else as JSON).
- ``saasfw_app``: the factory named by ``saasfw_app`` called with ``saasfw_settings()``.
  Define your own ``saasfw_app`` fixture to build it differently (e.g. with overrides).
- ``saasfw_client``: an ``httpx.Client`` over ``saasfw_app`` (ASGI, no socket) with its
  lifespan running (migrations applied, audit and database open) for the test; it works in
  plain and in async tests. ``app_client(app)`` is the same as a context manager.
- ``saasfw_token``: ``saasfw_token("alice", roles=["writer"]) -> str``, an access token
  signed with the app's own development key, exactly as ``saasfw dev token`` signs it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import json
import os
from collections.abc import Coroutine, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from anyio.from_thread import BlockingPortal
    from fastapi import FastAPI

    from saasfw.app import ServiceSettings

__all__ = [
    "SaasfwTestingError",
    "SettingsFactory",
    "TokenMinter",
    "app_client",
    "saasfw_app",
    "saasfw_client",
    "saasfw_settings",
    "saasfw_token",
]

_DEVELOPMENT = ("development", "test")


class SaasfwTestingError(RuntimeError):
    """The plugin is not told how to build the service, or is told something it cannot do."""


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ini options (``--strict-config`` projects would refuse them otherwise)."""
    parser.addini("saasfw_app", "module:factory building the service's FastAPI app", default="")
    parser.addini(
        "saasfw_settings_model",
        "module:Class of the service's settings (default saasfw.app:ServiceSettings)",
        default="",
    )
    parser.addini(
        "saasfw_service", "service name (default [project].name of pyproject.toml)", default=""
    )


def _import(spec: str, option: str) -> Any:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise SaasfwTestingError(f"{option} = {spec!r}: expected module:attribute")
    try:
        found: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise SaasfwTestingError(f"{option} = {spec!r} cannot be imported: {exc}") from exc
    return found


def _service_name(config: pytest.Config) -> str:
    from saasfw.app._cli_token import project_name

    given = str(config.getini("saasfw_service"))
    if given:
        return given
    name = project_name(config.rootpath)
    if name is not None:
        return name
    raise SaasfwTestingError(
        "saasfw.testing: which service? set saasfw_service in [tool.pytest.ini_options] "
        "(or [project].name in the rootdir's pyproject.toml)"
    )


def _variable(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


class SettingsFactory:
    """Builds the service's settings for a test: ``test`` environment, temporary data dir."""

    def __init__(self, config: pytest.Config, data_dir: Path) -> None:
        self._config = config
        self.data_dir = data_dir

    def __call__(
        self, *, model: type[ServiceSettings] | None = None, **overrides: Any
    ) -> ServiceSettings:
        """The settings with ``overrides`` (``section__field=value``) applied last."""
        from saasfw.app import ServiceSettings, load_settings

        if model is None:
            spec = str(self._config.getini("saasfw_settings_model"))
            model = _import(spec, "saasfw_settings_model") if spec else ServiceSettings
        if not (isinstance(model, type) and issubclass(model, ServiceSettings)):
            raise SaasfwTestingError(f"saasfw.testing: {model!r} is not a ServiceSettings")
        environ = {k: v for k, v in os.environ.items() if not k.upper().startswith("SAASFW_")}
        environ["SAASFW_DATA_DIR"] = str(self.data_dir)
        environ.update({f"SAASFW_{k.upper()}": _variable(v) for k, v in overrides.items()})
        config_dir = self._config.rootpath / "config"
        loaded = load_settings(
            model,
            service=_service_name(self._config),
            env="test",
            config_dir=config_dir if config_dir.is_dir() else None,
            env_file=None,
            secrets_dir=None,
            environ=environ,
        )
        return loaded.settings


def _run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coroutine`` to completion, also from inside an async test's running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


class TokenMinter:
    """Mints access tokens the app accepts, signed as ``saasfw dev token`` signs them."""

    def __init__(self, settings: ServiceSettings) -> None:
        if settings.env not in _DEVELOPMENT:
            raise SaasfwTestingError(
                f"saasfw.testing: development tokens are minted only in development or test, "
                f"not {settings.env!r}"
            )
        self.settings = settings

    def __call__(
        self,
        sub: str,
        *,
        roles: Iterable[str] = (),
        scopes: Iterable[str] = (),
        tenant: str | None = None,
        ttl: float | None = None,
    ) -> str:
        """An access token for ``sub`` with ``roles`` and ``scopes`` (``ttl`` in seconds)."""
        # The command's own minting, so a test's token is the one a developer would mint.
        from saasfw.app import development_token

        token = development_token(
            self.settings, sub, roles=roles, scopes=scopes, tenant=tenant, ttl=ttl
        )
        return str(_run(token))


@pytest.fixture
def saasfw_settings(request: pytest.FixtureRequest, tmp_path: Path) -> SettingsFactory:
    """``saasfw_settings(**overrides)``: the service's settings in ``test``, on ``tmp_path``."""
    data_dir = tmp_path / "saasfw-data"
    data_dir.mkdir(exist_ok=True)
    return SettingsFactory(request.config, data_dir)


@pytest.fixture
def saasfw_app(request: pytest.FixtureRequest, saasfw_settings: SettingsFactory) -> FastAPI:
    """The service's app, built by the ``saasfw_app`` factory from ``saasfw_settings()``."""
    spec = str(request.config.getini("saasfw_app"))
    if not spec:
        raise SaasfwTestingError(
            "saasfw.testing: set saasfw_app = 'module:factory' in [tool.pytest.ini_options] "
            "(the factory takes ServiceSettings and returns the app), or define a saasfw_app "
            "fixture"
        )
    factory = _import(spec, "saasfw_app")
    app: FastAPI = factory(saasfw_settings())
    return app


class _PortalTransport(httpx.BaseTransport):
    """Hands each request to the app over ASGI, on the event loop its lifespan runs in."""

    def __init__(self, app: FastAPI, portal: BlockingPortal) -> None:
        self._asgi = httpx.ASGITransport(app=app)
        self._portal = portal

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()

        async def call() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            forwarded = httpx.Request(
                request.method, request.url, headers=request.headers, content=body
            )
            response = await self._asgi.handle_async_request(forwarded)
            content = await response.aread()
            return response.status_code, response.headers.raw, content

        status, headers, content = self._portal.call(call)
        return httpx.Response(
            status, headers=headers, stream=httpx.ByteStream(content), request=request
        )


@contextmanager
def app_client(app: FastAPI, base_url: str = "http://testserver") -> Iterator[httpx.Client]:
    """A synchronous ``httpx.Client`` over ``app`` with its lifespan running meanwhile.

    The app runs on an event loop in a thread of its own, so the client works from plain
    and from async tests alike; it starts the lifespan first and stops it when the block ends.
    """
    from anyio.from_thread import start_blocking_portal

    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(app.router.lifespan_context(app)),
        httpx.Client(transport=_PortalTransport(app, portal), base_url=base_url) as client,
    ):
        yield client


@pytest.fixture
def saasfw_client(saasfw_app: FastAPI) -> Iterator[httpx.Client]:
    """An ``httpx.Client`` over the app, its lifespan running for the whole test."""
    with app_client(saasfw_app) as client:
        yield client


@pytest.fixture
def saasfw_token(saasfw_app: FastAPI) -> TokenMinter:
    """``saasfw_token(sub, roles=..., scopes=..., tenant=..., ttl=...)``: a bearer token."""
    settings: Any = getattr(saasfw_app.state, "saasfw_settings", None)
    if settings is None:
        raise SaasfwTestingError("saasfw.testing: saasfw_app was not built by create_app")
    return TokenMinter(settings)
