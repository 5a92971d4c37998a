"""deploy/ against the real packages.

Acceptance 4 (saasfw-k8s): the Grafana dashboard, the Prometheus rules and the compose file
parse and reference only metric names (and labels) that saasfw-observability really exports,
collected from a live scrape of its middleware and metrics endpoint.

Acceptance 5 (saasfw-k8s): the Dockerfile is multi-stage with a non-root final stage and no
build tools in it; its dependency installation (deploy/docker/install.sh, the script its RUN
executes) and its start command (deploy/docker/start.sh, its CMD) run here in a clean virtual
environment, and the started service drains and exits 0 on SIGTERM.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

# A plain import: if saasfw.observability cannot be imported this module fails to collect,
# which fails the run; it never skips.
from saasfw.observability import MetricsApp, ObservabilityMiddleware, red_metrics

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "saasfw-red.json"
COMPOSE = DEPLOY / "docker-compose.yml"
RULES = DEPLOY / "prometheus" / "rules.yml"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
DOCKERFILE = DEPLOY / "Dockerfile"

# Labels Prometheus adds to every scraped series (plus the target labels in prometheus.yml).
SCRAPE_LABELS = frozenset({"job", "instance"})


# --------------------------------------------------------------------------------------
# Acceptance 4: metric names
# --------------------------------------------------------------------------------------


async def _exported() -> dict[str, frozenset[str]]:
    """Sample names the observability package exports, with their label names."""
    registry = CollectorRegistry()
    metrics = red_metrics(registry)
    app = FastAPI()

    @app.get("/orders/{order_id}")
    async def order(order_id: int) -> dict[str, int]:
        return {"id": order_id}

    # The umbrella reports the rate limiter's counters on the same registry.
    from saasfw.app._ratelimit_metrics import register_rate_limit_metrics
    from saasfw.security import RateLimiter, RateLimitPolicy, RateLimitSettings

    limiter = RateLimiter(RateLimitSettings())
    register_rate_limit_metrics(registry, limiter)
    policy = RateLimitPolicy(name="login", limits="5/minute", key="address")
    scope = {"type": "http", "client": ("10.0.0.1", 1), "headers": [], "path": "/"}
    await limiter.check(policy, scope)
    wrapped = ObservabilityMiddleware(app, metrics=metrics)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=wrapped), base_url="http://t"
    ) as client:
        assert (await client.get("/orders/1")).status_code == 200
        assert (await client.get("/orders/x")).status_code == 422
    scrape_app = MetricsApp(registry, metrics=metrics)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=scrape_app), base_url="http://t"
    ) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return {name: frozenset(labels) for name, labels in names.items()}


@pytest.fixture(scope="module")
def exported() -> dict[str, frozenset[str]]:
    import asyncio

    return asyncio.run(_exported())


_STRING = re.compile(r'"(?:\\.|[^"\\])*"')
_SELECTOR = re.compile(r"\{([^}]*)\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_IDENT = re.compile(r"(?<![A-Za-z0-9_:.])[A-Za-z_:][A-Za-z0-9_:]*")
_LABEL_VALUES = re.compile(
    r"label_values\(\s*(?:([A-Za-z_:][\w:]*)\s*(\{[^}]*\})?\s*,)?\s*(\w+)\s*\)"
)
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
    | {"group_left", "group_right", "inf", "nan", "Inf", "NaN"}
)


def promql_references(expr: str) -> tuple[set[str], set[tuple[str | None, str]]]:
    """(metric names, (metric or None, label name) pairs) referenced by a PromQL expression.

    Metric names are identifiers not followed by ``(`` (functions, aggregations) outside
    strings, label matchers, ranges and grouping clauses. Label names come from matchers
    (bound to the metric they follow) and from grouping clauses (bound to no metric).
    """
    metrics: set[str] = set()
    labels: set[tuple[str | None, str]] = set()
    for match in _LABEL_VALUES.finditer(expr):
        metric, selector, label = match.groups()
        if metric:
            metrics.add(metric)
        labels.add((metric, label))
        if selector:
            labels.update((metric, name) for name in _matcher_labels(selector[1:-1]))
    expr = _LABEL_VALUES.sub(" ", expr)
    without_strings = _STRING.sub('""', expr)
    for match in _SELECTOR.finditer(without_strings):
        before = without_strings[: match.start()].rstrip()
        owner = _IDENT.findall(before[-200:])
        metric = owner[-1] if owner and before.endswith(owner[-1]) else None
        labels.update((metric, name) for name in _matcher_labels(match.group(1)))
    text = _SELECTOR.sub(" ", without_strings)
    text = _RANGE.sub(" ", text)
    for match in _GROUPING.finditer(text):
        labels.update((None, name.strip()) for name in match.group(2).split(",") if name.strip())
    text = _GROUPING.sub(" ", text)
    for match in _IDENT.finditer(text):
        token = match.group()
        if token in _KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue
        metrics.add(token)
    return metrics, labels


def _matcher_labels(body: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", body)}


def _dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        exprs.append(query["query"] if isinstance(query, dict) else str(query))
    # Grafana variables expand at query time; they are never metric names.
    return [re.sub(r"\$\{?\w+\}?", "", e) for e in exprs]


def _rule_expressions() -> list[str]:
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def _target_labels() -> set[str]:
    config = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))
    return {
        label
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for label in static.get("labels", {})
    }


def test_the_extractor_finds_metrics_and_labels() -> None:
    metrics, labels = promql_references(
        'histogram_quantile(0.9, sum by (le, route) (rate(a_b_bucket{job=~"x|y", '
        'status="5.."}[5m]))) / on (route) group_left sum(c_total offset 5m) and d'
    )
    assert metrics == {"a_b_bucket", "c_total", "d"}
    assert labels == {
        (None, "le"),
        (None, "route"),
        ("a_b_bucket", "job"),
        ("a_b_bucket", "status"),
    }


def test_the_exported_names_are_the_agreed_red_metrics(
    exported: dict[str, frozenset[str]],
) -> None:
    assert {"method", "route", "status"} <= exported["saasfw_http_requests_total"]
    for suffix in ("_bucket", "_sum", "_count"):
        assert f"saasfw_http_request_duration_seconds{suffix}" in exported
    assert {"method", "route"} <= exported["saasfw_http_requests_in_flight"]
    # A near-miss name is caught: the check is not vacuous.
    (typo,), _ = promql_references("rate(saasfw_http_request_total[5m])")
    assert typo not in exported


@pytest.mark.parametrize(
    ("source", "expressions"),
    [("dashboard", _dashboard_expressions), ("prometheus rules", _rule_expressions)],
)
def test_queries_reference_only_exported_metrics_and_labels(
    exported: dict[str, frozenset[str]], source: str, expressions: Any
) -> None:
    allowed_labels = SCRAPE_LABELS | _target_labels()
    all_exported_labels = set().union(*exported.values())
    used: set[str] = set()
    for expr in expressions():
        metrics, labels = promql_references(expr)
        unknown = metrics - exported.keys()
        assert not unknown, f"{source}: {expr!r} uses metrics not exported: {sorted(unknown)}"
        used |= metrics
        for metric, label in labels:
            known = exported[metric] if metric is not None else all_exported_labels
            assert label in known | allowed_labels, f"{source}: {expr!r} uses label {label!r}"
    if source == "dashboard":
        # Rate, errors and duration all have a panel, and in-flight too.
        assert {
            "saasfw_http_requests_total",
            "saasfw_http_request_duration_seconds_bucket",
            "saasfw_http_requests_in_flight",
        } <= used


def test_compose_file_parses_and_references_only_exported_metrics(
    exported: dict[str, frozenset[str]],
) -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    compose = yaml.safe_load(text)
    services = compose["services"]
    assert {"app", "postgres", "redis", "prometheus", "grafana", "otel-collector", "jaeger"} <= set(
        services
    )
    for name in re.findall(r"\bsaasfw_[a-z0-9_]+", text):
        assert name in exported, name
    # Every file the stack mounts exists, relative to deploy/.
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), source
    app = services["app"]
    assert (DEPLOY / app["build"]["context"] / app["build"]["dockerfile"]).resolve() == DOCKERFILE
    assert app["read_only"] is True
    assert app["user"].split(":")[0] != "0"
    assert app["cap_drop"] == ["ALL"]
    grafana_mounts = dict(v.split(":")[:2] for v in services["grafana"]["volumes"])
    provider = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/dashboards/saasfw.yml").read_text(encoding="utf-8")
    )
    assert provider["providers"][0]["options"]["path"] == grafana_mounts["./grafana/dashboards"]
    datasource = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text(encoding="utf-8")
    )["datasources"][0]
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == datasource["uid"]
    collector = yaml.safe_load((DEPLOY / "otel-collector/config.yaml").read_text())
    assert collector["exporters"]["otlp/jaeger"]["endpoint"].split(":")[0] in services


# --------------------------------------------------------------------------------------
# Acceptance 5: the Dockerfile
# --------------------------------------------------------------------------------------


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def _stages(instructions: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in instructions:
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def test_dockerfile_is_multi_stage_with_a_non_root_final_stage_without_build_tools() -> None:
    stages = _stages(dockerfile_instructions(DOCKERFILE))
    froms = [stage[0][1] for stage in stages]
    assert len(stages) >= 2, froms
    build = next(s for s in stages if s[0][1].endswith(" AS build"))
    final = stages[-1]
    # Same base image in build and runtime: the copied venv's interpreter path holds.
    assert build[0][1].split()[0] == final[0][1].split()[0]

    users = [args for keyword, args in final if keyword == "USER"]
    assert users, "the final stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), users[-1]
    assert int(uid) != 0, users[-1]

    final_text = " ".join(args for _, args in final)
    assert "--from=uv" not in final_text
    assert "/uv" not in final_text
    assert not re.search(r"\b(apt-get|apk|yum)\b.*\binstall\b", final_text)
    assert not re.search(r"\b(gcc|build-essential|make)\b", final_text)
    copies = [args for keyword, args in final if keyword == "COPY" and "--from=" in args]
    assert copies == ["--from=build /app/.venv /app/.venv"]

    volumes = json.loads(next(args for keyword, args in final if keyword == "VOLUME"))
    assert {"/tmp", "/data"} <= set(volumes)
    assert json.loads(next(a for k, a in final if k == "CMD")) == ["/app/start.sh"]
    assert any(keyword == "RUN" and "deploy/docker/install.sh" in args for keyword, args in build)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


TINY_PYPROJECT = textwrap.dedent(
    """
    [project]
    name = "tiny-service"
    version = "0.0.1"
    requires-python = ">=3.11"
    dependencies = ["saasfw-k8s[uvicorn]>=0.3,<0.4", "fastapi>=0.115"]

    [build-system]
    requires = ["hatchling>=1.26"]
    build-backend = "hatchling.build"

    [tool.hatch.build.targets.wheel]
    packages = ["src/tiny_service"]
    """
)

TINY_APP = textwrap.dedent(
    """
    import sys

    from fastapi import FastAPI

    import saasfw.k8s
    from saasfw.k8s import HealthProbeMiddleware, HealthRegistry, Lifecycle

    lifecycle = Lifecycle()
    app = FastAPI(lifespan=lifecycle.lifespan)
    app.add_middleware(HealthProbeMiddleware, registry=HealthRegistry(), lifecycle=lifecycle)


    @app.get("/where")
    async def where() -> dict[str, str]:
        return {"prefix": sys.prefix, "k8s": saasfw.k8s.__file__}
    """
)


@pytest.mark.slow
def test_dockerfile_install_and_start_run_in_a_clean_virtual_environment(tmp_path: Path) -> None:
    uv = shutil.which("uv")
    assert uv is not None, "uv is needed to run the Dockerfile's install step"
    build = _stages(dockerfile_instructions(DOCKERFILE))[-2]
    (run,) = [args for keyword, args in build if keyword == "RUN"]
    words = shlex.split(run)
    assert words[-2:] == ["sh", "deploy/docker/install.sh"]

    service = tmp_path / "tiny_service"
    (service / "src" / "tiny_service").mkdir(parents=True)
    (service / "pyproject.toml").write_text(TINY_PYPROJECT, encoding="utf-8")
    (service / "src" / "tiny_service" / "__init__.py").write_text("", encoding="utf-8")
    (service / "src" / "tiny_service" / "app.py").write_text(TINY_APP, encoding="utf-8")
    venv = tmp_path / "venv"
    clean = {
        key: value
        for key, value in os.environ.items()
        if key not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "UV_PROJECT_ENVIRONMENT"}
    }
    install_env = {
        **clean,
        "SERVICE_DIR": str(service),
        "SERVICE_EXTRAS": "",
        "VENV": str(venv),
        "WHEELS": str(tmp_path / "wheels"),
        "PYTHON": sys.executable,
        "PATH": f"{Path(uv).parent}{os.pathsep}{clean.get('PATH', '')}",
    }
    subprocess.run(
        ["sh", str(DEPLOY / "docker" / "install.sh")],
        cwd=ROOT,
        env=install_env,
        check=True,
        timeout=240,
    )
    assert (venv / "bin" / "saasfw-k8s").exists()
    # The image copies only this environment: no installer or build tool inside it.
    for tool in ("pip", "uv", "gcc"):
        assert not (venv / "bin" / tool).exists(), tool

    port = _free_port()
    start_env = {
        **clean,
        "PATH": f"{venv / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "SAASFW_APP": "tiny_service.app:app",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    empty = tmp_path / "cwd"
    empty.mkdir()
    process = subprocess.Popen(
        ["sh", str(DEPLOY / "docker" / "start.sh")],
        cwd=empty,
        env=start_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, "the start command exited"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the service never became ready"
            time.sleep(0.1)
        where = httpx.get(f"http://127.0.0.1:{port}/where").json()
        assert Path(where["prefix"]).resolve() == venv.resolve()
        assert Path(where["k8s"]).resolve().is_relative_to(venv.resolve())
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# --------------------------------------------------------------------------------------
# The example service's committed manifests
# --------------------------------------------------------------------------------------


def test_committed_manifests_are_up_to_date_and_valid(tmp_path: Path) -> None:
    from saasfw.k8s import build_kustomization, validate_manifests

    committed = DEPLOY / "k8s" / "orders"
    out = tmp_path / "orders"
    subprocess.run(
        ["sh", str(DEPLOY / "k8s" / "render.sh")],
        env={**os.environ, "OUT": str(out)},
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=120,
    )
    fresh = {p.relative_to(out): p.read_text() for p in out.rglob("*") if p.is_file()}
    saved = {p.relative_to(committed): p.read_text() for p in committed.rglob("*") if p.is_file()}
    assert fresh == saved, "deploy/k8s/orders is stale: run `sh deploy/k8s/render.sh`"
    for tree in ("base", "overlays/development", "overlays/production"):
        assert validate_manifests(build_kustomization(committed / tree))


@pytest.mark.slow
def test_the_image_install_step_builds_the_projections_service_with_its_extras(
    tmp_path: Path,
) -> None:
    # The second example ships from the same Dockerfile (SERVICE_DIR and SERVICE_EXTRAS as
    # in examples/projections_service/README.md): its wheel must carry its migrations and
    # its broker and database drivers.
    uv = shutil.which("uv")
    assert uv is not None, "uv is needed to run the Dockerfile's install step"
    venv = tmp_path / "venv"
    clean = {
        key: value
        for key, value in os.environ.items()
        if key not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "UV_PROJECT_ENVIRONMENT"}
    }
    subprocess.run(
        ["sh", str(DEPLOY / "docker" / "install.sh")],
        cwd=ROOT,
        env={
            **clean,
            "SERVICE_DIR": "examples/projections_service",
            "SERVICE_EXTRAS": "postgres,rabbit",
            "VENV": str(venv),
            "WHEELS": str(tmp_path / "wheels"),
            "PYTHON": sys.executable,
            "PATH": f"{Path(uv).parent}{os.pathsep}{clean.get('PATH', '')}",
        },
        check=True,
        timeout=300,
    )
    assert (venv / "bin" / "projections-service").exists()
    probe = (
        "import asyncpg, aio_pika, projections_service, sys\n"
        "from pathlib import Path\n"
        "from projections_service.migrations import VERSIONS_DIR\n"
        "print(sorted(p.name for p in Path(VERSIONS_DIR).glob('v*.py')))\n"
        "print(Path(projections_service.__file__).resolve().is_relative_to(Path(sys.prefix)))\n"
    )
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    versions, inside = done.stdout.split("\n")[:2]
    assert versions == "['v0001_projection.py', 'v0002_erased_customers.py']"
    assert inside == "True"  # installed from its wheel, not the source tree
