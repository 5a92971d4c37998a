"""The development console: colours only on a terminal, no escape-code copies from uvicorn."""

from __future__ import annotations

import os
import pathlib
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


LOCALS_SCRIPT = """
import logging, os, sys
import structlog
from saasfw.observability import ObservabilitySettings, configure_logging

settings = {"format": "console", **({"show_locals": True} if sys.argv[1] == "on" else {})}
configure_logging(ObservabilitySettings.model_validate({"logging": settings}))


def charge(order_id):
    api_key = os.environ["CHARGE_KEY"]  # the value is never in the source
    sql_params = {"card": os.environ["CARD"], "order": order_id}
    raise RuntimeError("the payment provider refused")


for log in (logging.getLogger("orders"), structlog.get_logger("orders")):
    try:
        charge(7)
    except RuntimeError:
        log.exception("charge failed")
"""

_KEY = "sk_live_" + "9f8e7d6c5b4a" * 2
_CARD = "4111" + "1111" * 3


def _locals_run(mode: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env.update(CHARGE_KEY=_KEY, CARD=_CARD, COLUMNS="200")
    done = subprocess.run(
        [sys.executable, "-c", LOCALS_SCRIPT, mode],
        env=env,
        capture_output=True,
        check=True,
        timeout=120,
    )
    return done.stdout.decode() + done.stderr.decode()


def test_a_logged_exception_never_prints_frame_locals_by_default() -> None:
    output = _locals_run("default")
    # Both paths (standard library and structlog) logged the error with its traceback...
    assert output.count("charge failed") == 2
    assert output.count("the payment provider refused") >= 2
    assert "RuntimeError" in output
    assert "Logging error" not in output  # the renderer itself did not fail
    assert output.count("in charge") >= 2  # a traceback down to the failing frame, twice
    # ...and no value of a frame's local variables.
    assert _KEY not in output
    assert _CARD not in output


def test_frame_locals_are_shown_only_when_turned_on() -> None:
    pytest.importorskip("rich")  # without Rich, tracebacks never carry locals
    output = _locals_run("on")
    assert "Logging error" not in output
    if not _rich_fits_structlog():
        return  # an old Rich: tracebacks are printed plainly, without locals
    assert _KEY in output  # what the setting is for, in development only


def _rich_fits_structlog() -> bool:
    import inspect

    from rich.traceback import Traceback

    return "locals_hide_dunder" in inspect.signature(Traceback.from_exception).parameters


def test_show_locals_is_a_production_problem() -> None:
    from saasfw.observability import ObservabilitySettings, production_problems

    settings = ObservabilitySettings.model_validate({"logging": {"show_locals": True}})
    assert any(p.startswith("logging.show_locals") for p in production_problems(settings))
    assert not any("show_locals" in p for p in production_problems(ObservabilitySettings()))


MIGRATION_SCRIPT = """
import logging, sys
from pathlib import Path
from alembic import command
from alembic.config import Config
from saasfw.observability import ObservabilitySettings, configure_logging

here = Path(sys.argv[1])
logging_settings = {"format": sys.argv[2]}
if len(sys.argv) > 3:
    logging_settings["quiet_loggers"] = []
configure_logging(ObservabilitySettings.model_validate({"logging": logging_settings}))
config = Config()
config.set_main_option("script_location", str(here / "migrations"))
config.set_main_option("sqlalchemy.url", f"sqlite:///{here / 'app.db'}")
logging.getLogger("app").info("migrating")
command.upgrade(config, "head")
logging.getLogger("app").info("migrated")
"""

ENV_PY = """
from alembic import context
from sqlalchemy import create_engine

config = context.config
engine = create_engine(config.get_main_option("sqlalchemy.url"))
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
"""

REVISION = """
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table("orders", sa.Column("id", sa.Integer, primary_key=True))


def downgrade():
    op.drop_table("orders")
"""


def _migrate(tmp_path: pathlib.Path, *options: str) -> str:
    pytest.importorskip("alembic")
    migrations = tmp_path / "migrations"
    (migrations / "versions").mkdir(parents=True, exist_ok=True)
    (migrations / "env.py").write_text(ENV_PY)
    (migrations / "script.py.mako").write_text("")
    (migrations / "versions" / "0001_orders.py").write_text(REVISION)
    (tmp_path / "app.db").unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    done = subprocess.run(
        [sys.executable, "-c", MIGRATION_SCRIPT, str(tmp_path), *options],
        env=env,
        capture_output=True,
        check=True,
        timeout=120,
    )
    return done.stdout.decode() + done.stderr.decode()


def test_alembic_chatter_is_absent_from_a_real_migration_run(tmp_path: pathlib.Path) -> None:
    output = _migrate(tmp_path, "console")
    assert "migrating" in output
    assert "migrated" in output
    assert "Context impl" not in output
    assert "Will assume non-transactional DDL" not in output


def test_the_quiet_list_is_configurable_and_json_keeps_the_lines(
    tmp_path: pathlib.Path,
) -> None:
    # The lines are really there to be quieted: an empty list prints them on the console.
    loud = _migrate(tmp_path, "console", "no-quiet")
    assert "Context impl SQLiteImpl." in loud
    # Production (JSON) logs keep Alembic's INFO lines: quieting is for the console only.
    machine = _migrate(tmp_path, "json")
    assert "Context impl SQLiteImpl." in machine
