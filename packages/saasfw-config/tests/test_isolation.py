"""Per-service database isolation (acceptance 5)."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import BaseModel, SecretStr

from saasfw.config import (
    ProductionRules,
    UnsafeSettingsError,
    database_isolation_rule,
    database_target,
    enforce_production_rules,
    resolve_settings,
)
from saasfw.config._cli import main
from saasfw.config._isolation import owned_by

WriteFile = Callable[[str, str], Path]


class Db(BaseModel):
    url: SecretStr | None = None  # as saasfw-db declares it: the URL may carry a password
    schema_name: str | None = None


class Settings(BaseModel):
    db: Db = Db()


MODEL = textwrap.dedent(
    """
    from pydantic import BaseModel

    class Db(BaseModel):
        url: str | None = None

    class Settings(BaseModel):
        db: Db = Db()
    """
)


@pytest.mark.parametrize(
    ("url", "schema", "location", "owner"),
    [
        (
            "postgresql://u:p@db.internal/orders",
            None,
            "postgresql://db.internal:5432/orders",
            "orders",
        ),
        (
            "postgresql+asyncpg://127.0.0.1:6543/shop",
            "orders",
            "postgresql://localhost:6543/shop",
            "orders",
        ),
        ("postgresql://localhost/shop", "public", "postgresql://localhost:5432/shop", "shop"),
        ("mysql+pymysql://h/orders_main", None, "mysql://h:3306/orders_main", "orders_main"),
    ],
)
def test_database_target_of_server_urls(
    url: str, schema: str | None, location: str, owner: str
) -> None:
    target = database_target(url, schema)
    assert target is not None
    assert (target.location, target.owner) == (location, owner)
    assert "p@" not in target.describe()


def test_database_target_of_sqlite(project: Path) -> None:
    relative = database_target("sqlite+aiosqlite:///data/orders.db")
    absolute = database_target(f"sqlite:///{project}/data/orders.db")
    assert relative is not None
    assert absolute is not None
    assert relative.location == absolute.location
    assert relative.owner == "orders"
    memory = database_target("sqlite:///:memory:")
    assert memory is not None
    assert memory.memory
    assert database_target("not a url") is None


@pytest.mark.parametrize(
    ("owner", "service", "expected"),
    [
        ("orders", "orders", True),
        ("orders_test", "orders", True),
        ("orders-replica", "orders", True),
        ("ORDERS", "orders", True),
        ("ordersx", "orders", False),
        ("shop", "orders", False),
        ("order", "orders", False),
    ],
)
def test_owned_by(owner: str, service: str, expected: bool) -> None:
    assert owned_by(owner, service) is expected


def _enforce(service: str, env: str = "development", environ: dict[str, str] | None = None) -> None:
    loaded = resolve_settings(Settings, service=service, env=env, environ=environ or {})
    enforce_production_rules(loaded, ProductionRules([database_isolation_rule()]))


def test_acceptance_5_two_services_on_one_database_are_refused_naming_both(
    write: WriteFile,
) -> None:
    write("config/orders/base.yaml", "db:\n  url: postgresql://db.internal/orders\n")
    write("config/billing/base.yaml", "db:\n  url: postgresql://db.internal:5432/orders\n")
    with pytest.raises(UnsafeSettingsError) as caught:
        _enforce("orders")  # fatal even in development: a shared database is a leak anywhere
    report = caught.value.report()
    assert "services 'orders' and 'billing' share database" in report
    assert "postgresql://db.internal:5432/orders" in report
    with pytest.raises(UnsafeSettingsError) as from_billing:
        _enforce("billing")
    messages = [p.message for p in from_billing.value.problems]
    assert any("does not belong to service 'billing'" in m for m in messages)
    assert any("services 'billing' and 'orders' share database" in m for m in messages)


def test_schema_per_service_in_a_shared_database_is_fine(write: WriteFile) -> None:
    write("config/base.yaml", "db:\n  url: postgresql://db.internal/shop\n")
    write("config/orders/base.yaml", "db:\n  schema_name: orders\n")
    write("config/billing/base.yaml", "db:\n  schema_name: billing_v2\n")
    _enforce("orders")
    _enforce("billing")
    write("config/billing/production.yaml", "db:\n  schema_name: orders\n")
    _enforce("billing")  # development still uses billing_v2
    with pytest.raises(UnsafeSettingsError) as caught:
        _enforce("orders", env="production")
    assert "services 'orders' and 'billing' share database" in caught.value.report()
    assert "(schema orders)" in caught.value.report()


def test_shared_sqlite_file_is_refused(write: WriteFile) -> None:
    write("config/orders/base.yaml", "db:\n  url: sqlite:///var/orders.db\n")
    write("config/orders_audit/base.yaml", "db:\n  url: sqlite:///./var/orders.db\n")
    with pytest.raises(UnsafeSettingsError) as caught:
        _enforce("orders")
    assert "services 'orders' and 'orders_audit' share database sqlite:///" in str(caught.value)


def test_effective_url_from_environment_is_compared_with_sibling_files(write: WriteFile) -> None:
    write("config/orders/base.yaml", "db:\n  url: postgresql://h/orders\n")
    write("config/orders_reports/base.yaml", "db:\n  url: postgresql://h/orders_reports\n")
    _enforce("orders_reports")
    with pytest.raises(UnsafeSettingsError) as caught:
        _enforce("orders_reports", environ={"SAASFW_DB__URL": "postgresql://h/orders"})
    assert "services 'orders_reports' and 'orders' share" in str(caught.value)


def test_sibling_values_needing_unset_variables_are_not_compared(write: WriteFile) -> None:
    write("config/orders/base.yaml", "db:\n  url: postgresql://h/orders\n")
    write("config/billing/base.yaml", "db:\n  url: ${BILLING_DB_URL}\n")
    _enforce("orders")
    write("config/billing/base.yaml", "db:\n  url: ${BILLING_DB_URL:-postgresql://h/orders}\n")
    with pytest.raises(UnsafeSettingsError):
        _enforce("orders")


def test_unreadable_sibling_config_fails_closed(write: WriteFile) -> None:
    write("config/orders/base.yaml", "db:\n  url: postgresql://h/orders\n")
    (write("config/billing/base.yaml", "x").parent / "production.yaml").mkdir()
    with pytest.raises(UnsafeSettingsError) as caught:
        _enforce("orders", env="production")
    assert "cannot verify isolation from service 'billing'" in str(caught.value)


def test_no_database_url_means_nothing_to_check(project: Path) -> None:
    _enforce("orders")


def test_paths_are_configurable(project: Path) -> None:
    class Custom(BaseModel):
        database_url: str = "postgresql://h/shop"
        password: SecretStr = SecretStr("")

    loaded = resolve_settings(Custom, service="orders", env="test", environ={})
    rules = ProductionRules([database_isolation_rule(url_path="database_url")])
    with pytest.raises(UnsafeSettingsError) as caught:
        enforce_production_rules(loaded, rules)
    assert caught.value.problems[0].path == "database_url"
    lenient = ProductionRules(
        [database_isolation_rule(url_path="database_url", fatal_in=frozenset({"production"}))]
    )
    assert len(enforce_production_rules(loaded, lenient)) == 1


def test_cli_check_refuses_shared_database(
    write: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    write("iso_model.py", MODEL)
    write("config/orders/base.yaml", "db:\n  url: postgresql://db/orders\n")
    write("config/billing/base.yaml", "db:\n  url: postgresql://db/orders\n")
    code = main(["check", "--service", "orders", "--model", "iso_model:Settings", "--env", "test"])
    assert code == 78
    assert "services 'orders' and 'billing' share database" in capsys.readouterr().err


def test_schema_defaulting_to_the_service_name(write: WriteFile) -> None:
    """saasfw-db's convention: a PostgreSQL URL without schema_name uses schema <service>."""
    write("config/base.yaml", "db:\n  url: postgresql://db/shop\n")
    write("config/orders/base.yaml", "{}\n")
    write("config/billing/base.yaml", "{}\n")
    rules = ProductionRules([database_isolation_rule(schema_defaults_to_service=True)])
    loaded = resolve_settings(Settings, service="orders", env="test", environ={})
    assert enforce_production_rules(loaded, rules) == []  # schemas orders and billing
    with pytest.raises(UnsafeSettingsError):  # without the convention: database 'shop'
        enforce_production_rules(loaded, ProductionRules([database_isolation_rule()]))
    write("config/billing/base.yaml", "db:\n  schema_name: orders\n")
    with pytest.raises(UnsafeSettingsError) as caught:
        enforce_production_rules(loaded, rules)
    assert "services 'orders' and 'billing' share database" in str(caught.value)
    assert "(schema orders)" in str(caught.value)
