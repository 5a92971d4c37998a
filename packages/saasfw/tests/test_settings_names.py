"""The umbrella's settings helpers do not reuse saasfw.config's names for other things."""

from __future__ import annotations

from pathlib import Path

import saasfw.config
from saasfw.app import ServiceSettings, _effective


def test_runtime_settings_fills_the_derived_defaults(tmp_path: Path) -> None:
    settings = ServiceSettings(service="named-svc", env="test", data_dir=tmp_path)
    runtime = _effective.runtime_settings(settings)
    assert runtime.security.jwt.issuer == "named-svc"
    assert runtime.security.jwt.audiences == ("named-svc",)
    assert runtime.security.jwt.hmac_secret is not None  # generated in test
    assert settings.security.jwt.issuer is None  # the loaded settings are left as they were


def test_the_old_umbrella_name_still_resolves_and_differs_from_config_s() -> None:
    assert _effective.effective_settings is _effective.runtime_settings
    assert saasfw.config.effective_settings is not _effective.runtime_settings
