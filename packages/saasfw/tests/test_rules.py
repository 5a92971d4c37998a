"""Production rules and effective settings: fail closed in production, keys only in dev."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from saasfw.app import ServiceSettings, load_settings, production_rules
from saasfw.app._effective import effective_settings
from saasfw.config import UnsafeSettingsError, enforce_production_rules

SECRET = "k" * 16 + "7f3a9c2e1b5d8f4a6c0e"  # 36 bytes, not a placeholder


def load(tmp_path: Path, env: str, **variables: str) -> object:
    return load_settings(
        ServiceSettings,
        service="billing",
        env=env,
        config_dir=None,
        environ={"SAASFW_DATA_DIR": str(tmp_path), **variables},
    )


def violations(error: UnsafeSettingsError) -> str:
    return error.report()


def test_production_without_keys_is_refused_with_every_reason(tmp_path: Path) -> None:
    loaded = load(tmp_path, "production")
    with pytest.raises(UnsafeSettingsError) as refused:
        enforce_production_rules(loaded, production_rules())  # type: ignore[arg-type]
    report = violations(refused.value)
    assert "security.jwt.hmac_secret" in report
    assert "audit" in report
    assert not (tmp_path / "billing" / "dev-secrets.json").exists()  # nothing generated


def test_production_with_keys_and_sinks_passes(tmp_path: Path) -> None:
    loaded = load(
        tmp_path,
        "production",
        SAASFW_SECURITY__JWT__HMAC_SECRET=SECRET,
        SAASFW_AUDIT__FILE__PATH=str(tmp_path / "audit.jsonl"),
        SAASFW_AUDIT__CHAIN_KEY="ab" * 32,
        SAASFW_AUDIT__CHECKPOINTS__PATH=str(tmp_path / "checkpoints.jsonl"),
        SAASFW_AUDIT__CHECKPOINTS__SIGNING_KEY="cd" * 32,
        SAASFW_DB__CURSOR_SECRET="cu" * 20,
        SAASFW_DEPLOYMENT__INSTANCES="1",  # one instance, declared: SQLite is allowed
    )
    assert enforce_production_rules(loaded, production_rules()) == []  # type: ignore[arg-type]
    assert SECRET not in repr(loaded)


def test_memory_rate_limits_are_refused_with_several_processes(tmp_path: Path) -> None:
    loaded = load(tmp_path, "production", SAASFW_HTTP__PROCESSES="3")
    with pytest.raises(UnsafeSettingsError) as refused:
        enforce_production_rules(loaded, production_rules())  # type: ignore[arg-type]
    assert "security.rate_limit.storage_url (rule fleet; model default)" in violations(
        refused.value
    )
    with_redis = load(
        tmp_path,
        "development",
        SAASFW_HTTP__PROCESSES="3",
        SAASFW_REDIS_URL="redis://127.0.0.1:6379/0",
    )
    found = enforce_production_rules(with_redis, production_rules())  # type: ignore[arg-type]
    assert not any(v.path == "security.rate_limit.storage_url" for v in found)


def test_a_database_of_another_service_is_refused_everywhere(tmp_path: Path) -> None:
    loaded = load(
        tmp_path,
        "development",
        SAASFW_DB__URL="postgresql://u@db.internal:5432/shared",
        SAASFW_DB__SCHEMA_NAME="orders",
    )
    with pytest.raises(UnsafeSettingsError) as refused:
        enforce_production_rules(loaded, production_rules())  # type: ignore[arg-type]
    assert "does not belong to service 'billing'" in violations(refused.value)


def test_development_keys_are_generated_once_and_private(tmp_path: Path) -> None:
    settings = ServiceSettings(service="billing", env="development", data_dir=tmp_path)
    first = effective_settings(settings)
    second = effective_settings(settings)
    secrets_file = tmp_path / "billing" / "dev-secrets.json"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    assert first.security.jwt.hmac_secret is not None
    assert second.security.jwt.hmac_secret is not None
    assert (
        first.security.jwt.hmac_secret.get_secret_value()
        == second.security.jwt.hmac_secret.get_secret_value()
    )
    stored = json.loads(secrets_file.read_text())
    assert first.security.jwt.hmac_secret.get_secret_value() not in repr(first)
    assert set(stored) >= {"jwt_secret", "audit_chain_key", "api_key_pepper"}
    assert first.audit.file is not None
    assert first.audit.file.path == tmp_path / "billing" / "audit" / "audit.jsonl"
    assert first.security.jwt.issuer == "billing"
    assert first.db.data_dir == tmp_path


def test_staging_generates_nothing(tmp_path: Path) -> None:
    settings = ServiceSettings(service="billing", env="staging", data_dir=tmp_path)
    effective = effective_settings(settings)
    assert effective.security.jwt.hmac_secret is None
    assert effective.audit.file is None
    assert not (tmp_path / "billing").exists()


def test_redis_url_moves_shared_state_to_redis(tmp_path: Path) -> None:
    settings = ServiceSettings(
        service="billing",
        env="test",
        data_dir=tmp_path,
        redis_url="redis://127.0.0.1:6379/0",  # type: ignore[arg-type]
        redis_prefix="tenant-a",
    )
    effective = effective_settings(settings)
    limits = effective.security.rate_limit
    assert not limits.uses_memory_storage
    assert limits.key_prefix == "tenant-a:ratelimit"
    assert effective.security.redis_url is not None


def test_default_env_yields_to_the_environment_and_the_dotenv_file(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("SAASFW_ENV=staging\n")

    def env_of(environ: dict[str, str], **layers: object) -> str:
        return load_settings(
            ServiceSettings,
            service="billing",
            default_env="development",
            config_dir=None,
            environ={"SAASFW_DATA_DIR": str(tmp_path), **environ},
            **layers,
        ).env

    assert env_of({}, env_file=None) == "development"
    assert env_of({"SAASFW_ENV": "test"}, env_file=None) == "test"
    assert env_of({}, env_file=str(dotenv)) == "staging"
