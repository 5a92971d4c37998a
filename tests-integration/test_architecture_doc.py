"""docs/architecture.md says what the code says, and the API reference shows every public name.

The page's checkable sections (production rules, settings layers, middleware order, the
package dependencies) are filled from the code at docs build by ``scripts/docs_hooks.py``;
here the committed page must hold the same text, so it reads right outside the built site
too. The settings layers are measured against ``saasfw.config.resolve_settings`` itself,
and the dependency table against every package's pyproject and imports.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "architecture.md"
PACKAGES = ("core", "config", "observability", "security", "db", "audit", "k8s", "messaging")


def _script(name: str) -> ModuleType:
    path = ROOT / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"docs_script_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def hooks() -> ModuleType:
    return _script("docs_hooks")


@pytest.fixture(scope="module")
def sections(hooks: ModuleType) -> dict[str, str]:
    generated: dict[str, str] = hooks.generate()
    return generated


def test_the_committed_page_holds_what_the_code_says(
    hooks: ModuleType, sections: dict[str, str]
) -> None:
    text = PAGE.read_text("utf-8")
    names = [match.group(2) for match in hooks.SECTION.finditer(text)]
    assert sorted(names) == ["dependencies", "layers", "middleware", "rules"]
    assert hooks.fill(text, sections) == text, (
        "docs/architecture.md is stale: run `python scripts/docs_hooks.py docs/architecture.md`"
    )


def test_every_other_page_with_generated_sections_is_current(
    hooks: ModuleType, sections: dict[str, str]
) -> None:
    pages = [p for p in sorted((ROOT / "docs").rglob("*.md")) if p != PAGE]
    marked = [p for p in pages if hooks.SECTION.search(p.read_text("utf-8"))]
    assert ROOT / "docs" / "packages" / "config.md" in marked
    stale = [
        str(p.relative_to(ROOT))
        for p in marked
        if hooks.fill(p.read_text("utf-8"), sections) != p.read_text("utf-8")
    ]
    assert not stale, f"stale: run `python scripts/docs_hooks.py {' '.join(stale)}`"


def test_the_hook_replaces_stale_text_and_refuses_unknown_sections(
    hooks: ModuleType, sections: dict[str, str]
) -> None:
    stale = "intro\n<!-- generated:rules -->\n| rule | old |\n<!-- /generated -->\nafter\n"
    filled = hooks.on_page_markdown(stale, page=None, config=None, files=None)
    assert "| rule | old |" not in filled
    assert sections["rules"].strip() in filled
    assert filled.startswith("intro\n")
    assert filled.endswith("after\n")
    with pytest.raises(KeyError, match="no generator for section 'nonsense'"):
        hooks.fill("<!-- generated:nonsense -->\nx\n<!-- /generated -->\n", sections)


def test_every_registered_production_rule_is_listed(sections: dict[str, str]) -> None:
    from saasfw.app import production_rules

    listed = re.findall(r"^\| `([^`]+)` \|", sections["rules"], re.M)
    assert listed == [rule.name for rule in production_rules()]
    # The finding: db's and observability's rules were never registered.
    assert {"db", "db.isolation", "observability"} <= set(listed)


def test_settings_layers_are_ranked_by_the_loader_itself() -> None:
    generate = _script("docs_generate")
    measured = generate.measured_layers()
    assert sorted(measured) == sorted(generate.LAYERS), "a layer never won"
    assert measured[0] == "default"
    # The YAML files go from general to specific, then the process overrides every file.
    assert measured.index("base") < measured.index("service_base") < measured.index("env")
    assert measured.index("env") < measured.index("service_env") < measured.index("dotenv")
    assert measured.index("dotenv") < measured.index("environ")
    assert measured[-2:] == ["secrets_dir", "pointer"]


def test_the_middleware_section_follows_the_factory_order(sections: dict[str, str]) -> None:
    from saasfw.app._factory import MIDDLEWARE_ORDER

    slots = re.findall(r"^\d+\. `([a-z_]+)`:", sections["middleware"], re.M)
    assert tuple(slots) == MIDDLEWARE_ORDER
    classes = re.findall(r"ASGI: `([\w.]+)`", sections["middleware"])
    assert classes[0] == "saasfw.k8s.HealthProbeMiddleware"  # probes bypass everything
    assert classes.index("saasfw.security.SecurityMiddleware") < classes.index(
        "saasfw.audit.AuditMiddleware"
    )


def test_concerns_depend_on_saasfw_core_alone() -> None:
    dists = {d["name"]: d for d in _script("docs_generate").distributions()}
    assert set(dists) == {"saasfw", "saasfw-core", *(f"saasfw-{p}" for p in PACKAGES[1:])}
    assert dists["saasfw-core"]["declared"] == []
    assert dists["saasfw-core"]["imported"] == []
    for package in PACKAGES[1:]:
        dist = dists[f"saasfw-{package}"]
        assert dist["declared"] == ["saasfw-core"], dist
        assert set(dist["imported"]) <= {"saasfw-core"}, dist
    umbrella = dists["saasfw"]
    assert set(umbrella["imported"]) <= set(umbrella["declared"]), umbrella


def test_the_api_reference_shows_exactly_each_package_s_public_names(tmp_path: Path) -> None:
    nav = (ROOT / "mkdocs.yml").read_text("utf-8")
    for package in (*PACKAGES, "app"):
        page = ROOT / "docs" / "reference" / f"{package}.md"
        assert f"::: saasfw.{package}\n" in page.read_text("utf-8")
        assert f"reference/{package}.md" in nav
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    griffe = [
        line for line in result.stderr.splitlines() if "griffe" in line or "mkdocstrings" in line
    ]
    assert not griffe, "\n".join(griffe)
    for package in (*PACKAGES, "app"):
        source = (ROOT / "docs" / "reference" / f"{package}.md").read_text("utf-8")
        modules = re.findall(r"^::: ([\w.]+)$", source, re.M)
        html = (tmp_path / "reference" / package / "index.html").read_text("utf-8")
        for module in modules:
            anchors = set(re.findall(rf'id="{re.escape(module)}\.([A-Za-z_]\w*)"', html))
            anchors -= {m.rsplit(".", 1)[1] for m in modules if m.startswith(module + ".")}
            public = set(importlib.import_module(module).__all__)
            assert anchors == public, (module, sorted(public - anchors), sorted(anchors - public))


async def test_problem_bodies_carry_the_correlation_id_the_probes_too(tmp_path: Path) -> None:
    """The page's claim: middleware problems carry the request's id; probes make their own."""
    import httpx

    from saasfw.app import ServiceSettings, create_app

    settings = ServiceSettings(service="architecture", env="development", data_dir=tmp_path)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            too_large = await client.post("/anything", content=b"x" * 2_000_000)
            missing = await client.get("/nowhere")
            probe = await client.get("/health/nonsense")
    for response in (too_large, missing, probe):
        body = response.json()
        assert body["type"].startswith("urn:saasfw:problem:"), body
        assert body["correlation_id"], body
        assert body["correlation_id"] == response.headers["x-request-id"]
    assert too_large.status_code == 413
    assert probe.status_code == 404


def test_the_umbrella_page_names_every_component_switch_and_its_default() -> None:
    from saasfw.app import ComponentSwitches

    text = (ROOT / "docs" / "packages" / "app.md").read_text("utf-8")
    start = text.index("Every piece of `create_app` is switched by `components`")
    sentence = text[start : text.index("replaced by passing", start)]
    listed, _, off = sentence.partition("off by default:")
    defaults = ComponentSwitches().model_dump()
    assert set(re.findall(r"`(\w+)`", listed)) - {"create_app", "components"} == set(defaults)
    assert set(re.findall(r"`(\w+)`", off)) == {k for k, on in defaults.items() if not on}


_LIFESPAN_ITEMS = {
    "observability": "observability",
    "the database": "database",
    "the audit logger": "audit",
    "security": "security",
    "the downstream clients": "clients",
    "the audit outbox relay": "audit_outbox",
    "messaging": "messaging",
    "the job scheduler": "jobs",
}


async def _nothing(context: object) -> None:
    return None


async def test_the_lifespan_list_is_the_order_parts_really_start(tmp_path: Path) -> None:
    """The page's numbered lifespan list against the shutdown hooks a started app registers."""
    from saasfw.app import ServiceSettings, create_app, lifecycle, singletons_of

    text = PAGE.read_text("utf-8")
    start = text.index("One lifespan (`saasfw/app/_compose.py`)")
    block = text[start : text.index("Then your singletons", start)]
    items = re.findall(r"^\d+\. (.+?)(?: \(|:|;|,)", block, re.M)
    documented = [_LIFESPAN_ITEMS[item] for item in items]
    settings = ServiceSettings.model_validate(
        {
            "service": "lifespan",
            "env": "development",
            "data_dir": str(tmp_path),
            "components": {"messaging": True},
            "messaging": {"kind": "memory"},  # the in-process transport: no broker needed
        }
    )
    from saasfw.app import Job

    app = create_app(settings, jobs=[Job("daily", 86_400, _nothing)])
    async with app.router.lifespan_context(app):
        life = singletons_of(app).get(lifecycle)
        started = [hook.name for hook in life._hooks]  # registration order = start order
    assert started == documented, (started, documented)
    assert len(started) == 8


def test_one_namespace_and_the_service_level_settings_named_on_the_page() -> None:
    assert not list(ROOT.glob("packages/*/src/saasfw/__init__.py"))  # PEP 420, one namespace
    from saasfw.app import ServiceSettings

    text = PAGE.read_text("utf-8")
    start = text.index("`ServiceSettings` nests them and adds")
    sentence = text[start : text.index("Its `security` section", start)]
    named = set(re.findall(r"`(\w+)`", sentence)) - {"ServiceSettings"}
    sections = {"observability", "db", "audit", "messaging", "security", "k8s"}
    identity = {"service", "env", "version", "data_dir"}
    fields = {name for name in ServiceSettings.model_fields if not name.startswith("deprecated")}
    assert named == fields - sections - identity


def test_every_name_in_the_ports_table_exists() -> None:
    text = PAGE.read_text("utf-8")
    start = text.index("| need | offered by |")
    table = text[start : text.index("\n\n", start)]
    names = {
        re.sub(r"\(.*", "", n) for n in re.findall(r"`([A-Za-z_][\w.]*(?:\([^`]*\))?)`", table)
    }
    names -= {"migrations=", "DEGRADED", "saasfw.app"}
    modules = [importlib.import_module(f"saasfw.{p}") for p in (*PACKAGES, "app")]
    missing = []
    for name in sorted(names):
        head, _, attribute = name.partition(".")
        owners = [m for m in modules if hasattr(m, head)]
        if not owners or (
            attribute and not any(hasattr(getattr(m, head), attribute) for m in owners)
        ):
            missing.append(name)
    assert not missing, missing
