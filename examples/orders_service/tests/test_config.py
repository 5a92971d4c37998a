"""The example's bundled configuration loads in every environment and matches its README."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from orders_service._app import CONFIG_DIR, SERVICE
from orders_service._settings import OrdersSettings

from saasfw.app import load_settings
from saasfw.security.settings import build_password_hasher, build_rbac_policy

README = Path(__file__).resolve().parents[1] / "README.md"


def load(env: str, tmp_path: Path) -> OrdersSettings:
    return load_settings(
        OrdersSettings,
        service=SERVICE,
        env=env,
        config_dir=CONFIG_DIR,
        environ={"SAASFW_DATA_DIR": str(tmp_path)},
    ).settings


@pytest.mark.parametrize("env", ["development", "test", "staging", "production"])
def test_config_loads_in_every_environment(env: str, tmp_path: Path) -> None:
    settings = load(env, tmp_path)
    assert settings.service == SERVICE
    assert settings.env == env
    policy = build_rbac_policy(settings.security.rbac)
    assert {"viewer", "clerk", "admin", "auditor"} <= policy.role_names
    assert settings.audit.encryption.fields == ("customer_email",)
    # Demo users exist only where people log in by hand or tests do.
    assert bool(settings.users) == (env in ("development", "test"))


def test_readme_passwords_match_the_demo_hashes(tmp_path: Path) -> None:
    settings = load("development", tmp_path)
    hasher = build_password_hasher(settings.security.passwords)
    rows = re.findall(r"^\| (\w+) \| `([^`]+)` \| (\w+) \|", README.read_text(), re.M)
    assert {user for user, _, _ in rows} == set(settings.users)
    for user, password, tenant in rows:
        demo = settings.users[user]
        assert demo.tenant == tenant
        check = hasher.verify(demo.password_hash, password)
        assert check.valid, user
        assert check.new_hash is None  # the hashes already use the configured cost
