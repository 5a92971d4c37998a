"""The example's and the umbrella's loaded settings refuse every change, at every depth.

Users, role permissions, peppers, the encrypted fields: nothing a request handler holds
can be changed in place (issue 18).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from orders_service._app import CONFIG_DIR, SERVICE
from orders_service._settings import OrdersSettings

from saasfw.app import ServiceSettings, load_settings
from saasfw.app._effective import effective_settings
from saasfw.config.testing import assert_deeply_immutable


@pytest.mark.parametrize("env", ["development", "test", "production"])
def test_the_examples_settings_are_deeply_immutable(env: str, tmp_path: Path) -> None:
    loaded = load_settings(
        OrdersSettings,
        service=SERVICE,
        env=env,
        config_dir=CONFIG_DIR,
        environ={"SAASFW_DATA_DIR": str(tmp_path)},
    ).settings
    checked = assert_deeply_immutable(loaded)
    assert checked > 40  # the walk reached the nested sections, users and roles
    # What the app really runs with (derived defaults, development keys) is frozen too.
    assert assert_deeply_immutable(effective_settings(loaded)) >= checked


def test_the_umbrellas_settings_are_deeply_immutable(tmp_path: Path) -> None:
    loaded = load_settings(
        ServiceSettings,
        service="billing",
        env="development",
        config_dir=None,
        environ={
            "SAASFW_DATA_DIR": str(tmp_path),
            "SAASFW_SECURITY__API_KEYS__PEPPERS": '{"k1": "' + "p" * 40 + '"}',
            "SAASFW_HTTP__TRUSTED_PROXIES": '["10.0.0.0/8"]',
        },
    ).settings
    assert assert_deeply_immutable(loaded) > 30
    assert assert_deeply_immutable(effective_settings(loaded)) > 30
