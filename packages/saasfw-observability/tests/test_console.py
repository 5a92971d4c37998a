"""The development console: colours only on a terminal, no escape-code copies from uvicorn."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = """
import logging
from saasfw.observability import ObservabilitySettings
from saasfw.observability._logging import configure_logging
configure_logging(ObservabilitySettings.model_validate({"logging": {"format": "console"}}))
logging.getLogger("uvicorn.error").info(
    "Started server process [%d]", 42,
    extra={"color_message": "Started server process [\\x1b[36m%d\\x1b[0m]"},
)
"""


def _run(*, tty: bool, no_color: bool) -> str:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    if no_color:
        env["NO_COLOR"] = "1"
    if not tty:
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT], env=env, capture_output=True, check=True
        )
        return done.stdout.decode()
    primary, secondary = os.openpty()
    try:
        subprocess.run(
            [sys.executable, "-c", SCRIPT], env=env, stdout=secondary, check=True, timeout=60
        )
        os.close(secondary)
        chunks = []
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks).decode()
    finally:
        os.close(primary)


@pytest.mark.parametrize(
    ("tty", "no_color", "coloured"),
    [
        (True, False, True),
        (True, True, False),
        (False, False, False),
    ],
)
def test_colours_follow_the_terminal_and_no_color(
    tty: bool, no_color: bool, coloured: bool
) -> None:
    output = _run(tty=tty, no_color=no_color)
    assert "Started server process [42]" in output
    assert "color_message" not in output
    assert ("\x1b[" in output) is coloured


def test_alembic_plugin_chatter_is_quiet_by_default() -> None:
    from saasfw.observability import ObservabilitySettings

    levels = ObservabilitySettings().logging.levels
    assert levels["alembic.runtime.plugins"] == "WARNING"
