"""The orders example's development console, as a person starting it sees it.

The README's run command (``python3 -m uv run --frozen orders-service``) runs from the
repository root in a user's shell, once under a pseudo-terminal, once under a pseudo-
terminal with ``NO_COLOR`` and once into a pipe. Its first 50 lines must hold the banner
exactly once, no escape-code noise (under the terminal only colour codes; elsewhere none)
and no third-party plugin chatter.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[3]
SGR = re.compile(r"\x1b\[[0-9;]*m")  # colour and weight only
LINES = 50

pytestmark = pytest.mark.slow


def readme_run_command() -> str:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "readme_commands.py"), "run"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def user_environment(data_dir: Path, port: int, *, no_color: bool) -> dict[str, str]:
    """A user's shell: no test virtual environment, no SAASFW_ variables of this run."""
    venv_bin = str(Path(sys.prefix) / "bin")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SAASFW_") and k not in {"VIRTUAL_ENV", "NO_COLOR", "FORCE_COLOR"}
    }
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if p and p != venv_bin
    )
    env.update(SAASFW_HTTP__PORT=str(port), SAASFW_DATA_DIR=str(data_dir), TERM="xterm-256color")
    if no_color:
        env["NO_COLOR"] = "1"
    return env


class Console:
    """Everything the process writes to its terminal or pipe, read as it arrives."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._fd, 65536)
            except OSError:  # EIO: the terminal's last writer has gone
                return
            if not chunk:
                return
            self._chunks.append(chunk)

    def text(self, timeout: float = 30.0) -> str:
        self._reader.join(timeout)
        return b"".join(self._chunks).decode("utf-8", errors="replace")


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the shell, uv and the server (one process group); SIGKILL what outlives 60s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)  # anyone of the group still running?
        except ProcessLookupError:
            break
        process.poll()  # reap the shell, so it does not linger as a zombie
        time.sleep(0.2)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def run_example(tmp_path: Path, *, terminal: bool, no_color: bool = False) -> list[str]:
    """Start the example as the README says, use it a little, stop it; its first lines."""
    port = free_port()
    env = user_environment(tmp_path / "var", port, no_color=no_color)
    command = ["bash", "-c", readme_run_command()]
    if terminal:
        primary, secondary = os.openpty()
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdin=secondary, stdout=secondary,
            stderr=secondary, start_new_session=True,
        )  # fmt: skip
        os.close(secondary)
        read_fd = primary
    else:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        assert process.stdout is not None
        read_fd = process.stdout.fileno()
    console = Console(read_fd)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert process.poll() is None, console.text(5)
            try:
                if httpx.get(f"{base}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        else:
            pytest.fail(f"the example never became ready:\n{console.text(1)}")
        assert httpx.get(f"{base}/orders", timeout=10).status_code == 401
        assert httpx.get(f"{base}/docs", timeout=10).status_code == 200
    finally:
        stop_group(process)
    text = console.text()
    if terminal:
        os.close(read_fd)
    elif process.stdout is not None:
        process.stdout.close()
    return text.replace("\r\n", "\n").split("\n")[:LINES]


def assert_clean(lines: list[str], *, coloured: bool) -> None:
    joined = "\n".join(lines)
    plain = SGR.sub("", joined)
    assert "\x1b" not in plain, "escape codes other than colours:\n" + joined
    assert ("\x1b[" in joined) is coloured, joined
    assert "color_message" not in plain
    # Exactly one banner, with its facts.
    assert plain.count(" is ready\n") == 1, plain
    for label in ("URL", "docs", "health", "metrics", "environment", "data", "dev secrets"):
        assert re.search(rf"^  {label} +\S", plain, re.M), (label, plain)
    assert re.search(r"^  environment +development$", plain, re.M), plain
    # No third-party plugin chatter (Alembic announces each plugin at INFO).
    chatter = [line for line in plain.splitlines() if "plugin" in line.lower()]
    assert chatter == [], chatter
    assert "alembic.runtime.plugins" not in plain


def test_console_under_a_terminal_is_coloured(tmp_path: Path) -> None:
    assert_clean(run_example(tmp_path, terminal=True), coloured=True)


def test_console_under_a_terminal_with_no_color_is_plain(tmp_path: Path) -> None:
    assert_clean(run_example(tmp_path, terminal=True, no_color=True), coloured=False)


def test_console_into_a_pipe_is_plain(tmp_path: Path) -> None:
    assert_clean(run_example(tmp_path, terminal=False), coloured=False)
