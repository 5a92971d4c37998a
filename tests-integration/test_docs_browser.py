"""/docs in a real headless browser, with every outside host unreachable.

Debian's chromium (``/usr/bin/chromium``), driven by Playwright, opens Swagger UI on a real
uvicorn-served orders example in development, authorizes with a token from the example's
login route, runs ``GET /orders`` through "Try it out" and reads the 200 answer on the page.
Every request to a host other than 127.0.0.1/localhost is aborted and recorded; none may
be needed. The screenshot is kept under ``$SAASFW_TEST_ARTIFACTS`` (or the test's temporary
directory). ReDoc renders and searches under its own CSP, and Swagger UI's OAuth2
authorization-code flow completes through the offline redirect page. Without chromium the
tests skip, or fail when ``SAASFW_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest

if TYPE_CHECKING:
    from conftest import ServerProcess, ServerStarter

ROOT = Path(__file__).resolve().parent.parent
# Debian's chromium; SAASFW_TEST_CHROMIUM names another build (or a missing one, to see
# the test refuse to pass without a browser).
CHROMIUM = Path(os.environ.get("SAASFW_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}

# The example served as its console script serves it, with the offline docs applied (a
# no-op when create_app already installs them).
LAUNCH = """
from orders_service._app import build_app, load
from saasfw.app import serve
from saasfw.app._docs_assets import install_offline_docs


def build(settings):
    app = build_app(settings)
    install_offline_docs(app)
    return app


serve(build, load())
"""


def _require_browser() -> Any:
    """Playwright's sync API, once chromium is known to be here (else skip, or fail in CI)."""
    required = os.environ.get("SAASFW_REQUIRE_SERVICES") == "1"
    problem = None
    if not CHROMIUM.is_file():
        problem = f"{CHROMIUM} is missing (apt-get install chromium)"
    else:
        try:
            from playwright import sync_api
        except ImportError:
            problem = "the playwright package is not installed"
        else:
            return sync_api
    if required:
        pytest.fail(f"SAASFW_REQUIRE_SERVICES=1 but {problem}")
    pytest.skip(problem)


def _artifacts_dir(tmp_path: Path) -> Path:
    configured = os.environ.get("SAASFW_TEST_ARTIFACTS")
    directory = Path(configured) if configured else tmp_path / "artifacts"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def start_example(server_starter: ServerStarter, port: int, tmp_path: Path) -> ServerProcess:
    """The orders example in development on SQLite, served by uvicorn on ``port``."""
    env = {k: "" for k in os.environ if k.startswith("SAASFW_")}
    env.update(
        {
            "SAASFW_ENV": "development",
            "SAASFW_DATA_DIR": str(tmp_path / "var"),
            "SAASFW_CONFIG_DIR": str(ROOT / "examples" / "orders_service" / "config"),
            "SAASFW_HTTP__PORT": str(port),
            "NO_COLOR": "1",
        }
    )
    return server_starter([sys.executable, "-c", LAUNCH], env=env, port=port)


@contextlib.contextmanager
def headless_chromium() -> Iterator[Any]:
    """Debian's chromium under Playwright (checked first: a missing browser fails in CI)."""
    sync_api = _require_browser()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def _login(base_url: str) -> str:
    answer = httpx.post(
        f"{base_url}/auth/login",
        json={"username": "alice", "password": "alice-demo-password"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def _local_only(context: Any, outside: list[str]) -> None:
    """Abort (and record) every request to a host other than this machine."""

    def guard(route: Any) -> None:
        url = route.request.url
        host = urlsplit(url).hostname  # None for data: and blob: URLs
        if host is not None and host not in LOCAL_HOSTS:
            outside.append(url)
            route.abort()
        else:
            route.continue_()

    context.route("**/*", guard)


def _authorize(page: Any, token: str) -> None:
    page.locator("button.authorize").first.click()
    modal = page.locator(".modal-ux")
    bearer = modal.locator(".auth-container").filter(has_text="bearerAuth")
    bearer.locator("input").fill(token)
    bearer.locator("button.authorize").click()
    bearer.locator("h6", has_text="Authorized").wait_for()
    modal.locator("button.btn-done").first.click()
    modal.wait_for(state="detached")


def test_swagger_ui_authorizes_and_runs_an_operation_offline(
    server_starter: ServerStarter, free_port: int, tmp_path: Path
) -> None:
    with headless_chromium() as browser:
        example = start_example(server_starter, free_port, tmp_path)
        run_one_operation(browser, example, tmp_path)


def run_one_operation(browser: Any, example: ServerProcess, tmp_path: Path) -> None:
    token = _login(example.base_url)
    created = httpx.post(
        f"{example.base_url}/orders",
        headers={"Authorization": f"Bearer {token}"},
        json={
            "customer_email": "docs@example.com",
            "sku": "DOCS-BROWSER-1",
            "quantity": 3,
            "unit_price_cents": 250,
        },
        timeout=30,
    )
    assert created.status_code == 201, created.text
    order_id = created.json()["id"]

    context = browser.new_context(viewport={"width": 1280, "height": 1100})
    outside: list[str] = []
    _local_only(context, outside)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))

    page.goto(f"{example.base_url}/docs")
    page.locator(".information-container h1.title", has_text="Orders service").wait_for()
    _authorize(page, token)
    operation = page.locator("#operations-orders-list_orders_orders_get")
    operation.locator(".opblock-summary").first.click()
    operation.locator("button.try-out__btn").click()
    operation.locator("button.execute").click()
    answer = operation.locator(".live-responses-table tbody .response").first
    answer.wait_for()
    status = answer.locator(".response-col_status").inner_text().strip()
    body = answer.locator(".response-col_description pre").first.inner_text()
    curl = operation.locator(".curl-command").inner_text()

    screenshot = _artifacts_dir(tmp_path) / "swagger-ui-try-it-out.png"
    # The executed request (curl line, URL) and its answer at the top of the viewport.
    operation.locator(".curl-command").evaluate("e => e.scrollIntoView({block: 'start'})")
    page.screenshot(path=str(screenshot))
    print(f"screenshot: {screenshot}")

    assert operation.locator(".opblock-summary-path").first.inner_text().strip() == "/orders"
    assert status == "200"
    assert order_id in body
    assert "DOCS-BROWSER-1" in body
    assert f"Authorization: Bearer {token}" in curl
    assert outside == []
    assert problems == []
    context.close()


def test_redoc_renders_offline(
    server_starter: ServerStarter, free_port: int, tmp_path: Path
) -> None:
    with headless_chromium() as browser:
        example = start_example(server_starter, free_port, tmp_path)
        render_redoc(browser, example)


def render_redoc(browser: Any, example: ServerProcess) -> None:
    context = browser.new_context()
    outside: list[str] = []
    _local_only(context, outside)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    schema = httpx.get(f"{example.base_url}/openapi.json", timeout=30).json()
    summary = schema["paths"]["/orders"]["get"]["summary"]
    page.goto(f"{example.base_url}/redoc")
    page.locator("h1", has_text="Orders service").wait_for()
    page.locator("h2", has_text=summary).first.wait_for()
    # Search runs in a worker made from a blob (the CSP's worker-src allows it).
    page.get_by_placeholder("Search...").fill("orders")
    page.locator("[data-role='search:results'] li").first.wait_for()
    # ReDoc's footer logo points at cdn.redoc.ly: the page's CSP blocks it before any
    # request leaves (the image then hides itself). Nothing else is refused.
    assert outside == []
    assert [e for e in errors if "cdn.redoc.ly/redoc/logo-mini.svg" not in e] == []
    context.close()


# A service whose OpenAPI scheme is an OAuth2 authorization-code flow, with a stand-in
# authorization server on the same origin that approves at once.
OAUTH_APP = """
import sys
from typing import Annotated
from urllib.parse import parse_qs, urlencode

import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.security import OAuth2AuthorizationCodeBearer

from saasfw.app._docs_assets import install_offline_docs

scheme = OAuth2AuthorizationCodeBearer(authorizationUrl="/oauth/authorize", tokenUrl="/oauth/token")
app = FastAPI(title="OAuth demo", swagger_ui_init_oauth={"clientId": "docs-client"})


@app.get("/health/ready", include_in_schema=False)
async def ready() -> dict[str, str]:
    return {"status": "UP"}


@app.get("/oauth/authorize", include_in_schema=False)
async def authorize(redirect_uri: str, state: str, client_id: str) -> RedirectResponse:
    code = "code-for-" + client_id
    return RedirectResponse(redirect_uri + "?" + urlencode({"code": code, "state": state}))


@app.post("/oauth/token", include_in_schema=False)
async def token(request: Request) -> dict[str, str]:
    form = parse_qs((await request.body()).decode())  # python-multipart is not installed
    assert form["grant_type"] == ["authorization_code"]
    return {"access_token": "token-from-" + form["code"][0], "token_type": "bearer"}


@app.get("/whoami")
async def whoami(token: Annotated[str, Depends(scheme)]) -> dict[str, str]:
    return {"token": token}


install_offline_docs(app)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def test_swagger_ui_oauth2_authorization_code_flow_through_the_offline_redirect_page(
    server_starter: ServerStarter, free_port: int
) -> None:
    with headless_chromium() as browser:
        server = server_starter(
            [sys.executable, "-c", OAUTH_APP, str(free_port)], env={}, port=free_port
        )
        context = browser.new_context()
        outside: list[str] = []
        _local_only(context, outside)
        page = context.new_page()
        page.goto(f"{server.base_url}/docs")
        page.locator("button.authorize").first.click()
        modal = page.locator(".modal-ux")
        assert (
            modal.locator("input[data-name=clientId]").input_value() == "docs-client"
        )  # init_oauth
        with page.expect_popup() as opened:
            modal.locator("button.authorize").first.click()
        popup = opened.value
        popup.wait_for_event("close")  # the redirect page hands the code back and closes
        modal.locator("h6", has_text="Authorized").wait_for()
        modal.locator("button.btn-done").first.click()
        operation = page.locator("#operations-default-whoami_whoami_get")
        operation.locator(".opblock-summary").first.click()
        operation.locator("button.try-out__btn").click()
        operation.locator("button.execute").click()
        answer = operation.locator(".live-responses-table tbody .response").first
        answer.wait_for()
        assert answer.locator(".response-col_status").inner_text().strip() == "200"
        body = answer.locator(".response-col_description pre").first.inner_text()
        assert "token-from-code-for-docs-client" in body
        assert outside == []
        context.close()
