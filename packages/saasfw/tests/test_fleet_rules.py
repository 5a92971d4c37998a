"""The deployed shape decides: a fleet refuses per-process state, audit stays on, TLS verifies."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import pytest

from saasfw.app import ServiceSettings, load_settings, production_rules
from saasfw.config import UnsafeSettingsError, enforce_production_rules

SECRET = "k" * 16 + "7f3a9c2e1b5d8f4a6c0e"
PG = "postgresql://orders:" + "p" * 14 + "x7Qz2Lm9Vb4Nc8Rt6Yw3@db.internal:5432/orders"

KEYS = {
    "SAASFW_SECURITY__JWT__HMAC_SECRET": SECRET,
    "SAASFW_AUDIT__CHAIN_KEY": "ab" * 32,
    "SAASFW_AUDIT__CHECKPOINTS__SIGNING_KEY": "cd" * 32,
    "SAASFW_DB__CURSOR_SECRET": "cu" * 20,
}


def load(tmp_path: Path, env: str = "production", **variables: str) -> Any:
    environ = {
        "SAASFW_DATA_DIR": str(tmp_path),
        "SAASFW_AUDIT__FILE__PATH": str(tmp_path / "audit.jsonl"),
        "SAASFW_AUDIT__CHECKPOINTS__PATH": str(tmp_path / "checkpoints.jsonl"),
        **KEYS,
        **variables,
    }
    return load_settings(
        ServiceSettings, service="orders", env=env, config_dir=None, environ=environ
    )


def refusal(loaded: Any) -> str:
    with pytest.raises(UnsafeSettingsError) as refused:
        enforce_production_rules(loaded, production_rules())
    return refused.value.report()


def test_a_rendered_production_pod_without_shared_stores_names_each_setting(
    tmp_path: Path,
) -> None:
    report = refusal(load(tmp_path, SAASFW_DEPLOYMENT__INSTANCES="13"))
    assert "db.url (rule fleet; model default)" in report
    assert "security.rate_limit.storage_url (rule fleet; model default)" in report
    assert "up to 13 instances" in report
    assert SECRET not in report


def test_an_unknown_instance_count_is_a_fleet(tmp_path: Path) -> None:
    report = refusal(load(tmp_path))
    assert "deployment.instances is unset" in report
    assert "db.url (rule fleet" in report


def test_a_fleet_on_postgres_and_redis_starts_with_plaintext_warnings(tmp_path: Path) -> None:
    loaded = load(
        tmp_path,
        SAASFW_DEPLOYMENT__INSTANCES="13",
        SAASFW_DB__URL=PG,
        SAASFW_REDIS_URL="redis://cache.internal:6379/0",
    )
    found = enforce_production_rules(loaded, production_rules())
    assert {v.rule for v in found} == {"tls.plaintext"}
    assert not any(v.fatal for v in found)
    assert {v.path for v in found} >= {"db.url", "redis_url"}


def test_memory_revocation_is_refused_even_for_one_declared_instance(tmp_path: Path) -> None:
    report = refusal(
        load(tmp_path, SAASFW_DEPLOYMENT__INSTANCES="1", SAASFW_COMPONENTS__DATABASE="false")
    )
    assert "components.database (rule fleet; set by env SAASFW_COMPONENTS__DATABASE)" in report
    assert "a restart brings logged-out sessions back" in report


def test_sessions_and_a_local_subject_key_store_are_refused_in_a_fleet(tmp_path: Path) -> None:
    report = refusal(
        load(
            tmp_path,
            SAASFW_DEPLOYMENT__INSTANCES="4",
            SAASFW_DB__URL=PG,
            SAASFW_SECURITY__RATE_LIMIT__STORAGE_URL="redis://cache.internal:6379/0",
            SAASFW_SECURITY__SESSIONS__ENABLED="true",
            SAASFW_AUDIT__ENCRYPTION__SUBJECT_KEYSTORE=str(tmp_path / "subjects"),
        )
    )
    assert "redis_url (rule fleet; model default): sessions would be kept in memory" in report
    assert "audit.encryption.subject_keystore (rule fleet; set by env" in report


@pytest.mark.parametrize(
    ("variable", "path"),
    [("SAASFW_AUDIT__ENABLED", "audit.enabled"), ("SAASFW_COMPONENTS__AUDIT", "components.audit")],
)
def test_audit_off_is_refused_unless_the_named_override_says_so(
    tmp_path: Path, variable: str, path: str
) -> None:
    single = {"SAASFW_DEPLOYMENT__INSTANCES": "1"}
    report = refusal(load(tmp_path, **single, **{variable: "false"}))
    assert f"{path} (rule audit.required; set by env {variable})" in report
    assert "overrides.allow_audit_off" in report
    allowed = load(tmp_path, **single, **{variable: "false"}, SAASFW_OVERRIDES__ALLOW_AUDIT_OFF="1")
    assert not any(v.fatal for v in enforce_production_rules(allowed, production_rules()))


@pytest.mark.parametrize(
    ("variables", "path"),
    [
        ({"SAASFW_REDIS_URL": "rediss://cache.internal:6380/0?ssl_cert_reqs=none"}, "redis_url"),
        ({"SAASFW_DB__URL": PG + "?sslmode=require"}, "db.url"),
    ],
)
def test_tls_verification_cannot_be_switched_off(
    tmp_path: Path, variables: dict[str, str], path: str
) -> None:
    fleet = {"SAASFW_DEPLOYMENT__INSTANCES": "1", **variables}
    report = refusal(load(tmp_path, **fleet))
    assert f"{path} (rule tls.verification; set by env" in report
    assert "p" * 14 + "x7Qz2" not in report  # the database password is never printed


def test_a_trail_kept_only_in_the_database_is_a_warning(tmp_path: Path) -> None:
    """Its rows are chained per producer, but it has no signed checkpoints."""
    loaded = load(
        tmp_path,
        SAASFW_DEPLOYMENT__INSTANCES="1",
        SAASFW_DB__URL=PG,
        SAASFW_COMPONENTS__AUDIT_IN_DATABASE="true",
    )
    settings = loaded.settings.model_copy(
        update={"audit": loaded.settings.audit.model_copy(update={"file": None})}
    )
    found = enforce_production_rules(
        dataclasses.replace(loaded, settings=settings), production_rules()
    )
    (chain,) = [v for v in found if v.rule == "audit.chain"]
    assert not chain.fatal
    assert chain.path == "audit.file"
    assert "signed checkpoints" in chain.message


def test_the_same_settings_in_development_are_one_warning_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    loaded = load(
        tmp_path,
        env="development",
        SAASFW_DEPLOYMENT__INSTANCES="3",
        SAASFW_AUDIT__ENABLED="false",
        SAASFW_REDIS_URL="rediss://cache.internal:6380/0?ssl_cert_reqs=none",
    )
    with caplog.at_level(logging.WARNING, logger="saasfw.config"):
        found = enforce_production_rules(loaded, production_rules())
    assert {v.rule for v in found} >= {"audit.required", "tls.verification"}
    assert not any(v.fatal for v in found)
    assert len(caplog.records) == len(found)


def test_the_production_checklist_and_the_registered_rules_agree() -> None:
    checklist = Path(__file__).parents[3] / "docs" / "production-checklist.md"
    if not checklist.is_file():
        pytest.skip("the docs are not beside this installed package")
    rows = [line for line in checklist.read_text().splitlines() if line.startswith("| `")]
    documented = {row.split("`")[1] for row in rows}
    registered = {rule.name for rule in production_rules()}
    assert documented == registered


async def test_audit_off_by_override_is_reported_in_the_log_and_metrics(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import httpx
    from prometheus_client import CollectorRegistry

    from saasfw.app import create_app
    from saasfw.app._observability import observability_settings
    from saasfw.observability import setup_observability

    loaded = load(
        tmp_path,
        SAASFW_DEPLOYMENT__INSTANCES="1",
        SAASFW_AUDIT__ENABLED="false",
        SAASFW_OVERRIDES__ALLOW_AUDIT_OFF="true",
    )
    settings = loaded.settings
    obs = setup_observability(
        observability_settings(settings), registry=CollectorRegistry(), logging=False
    )
    with caplog.at_level(logging.WARNING, logger="saasfw.app"):
        app = create_app(settings, observability=obs)
    assert "audit is switched off in production" in caplog.text
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as client,
    ):
        metrics = (await client.get("/metrics")).text
    assert "saasfw_audit_disabled 1.0" in metrics
