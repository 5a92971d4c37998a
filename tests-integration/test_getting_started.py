"""Acceptance: docs/getting-started.md, followed exactly as written, in a clean environment.

The page is read as a user reads it: every ``bash`` block is a command typed in a shell,
every block whose preceding line ends with ```path`:`` is a file saved under that name
in the shell's current directory, and every ``text`` block after the service is started
is output the commands must print. Nothing is taken from this repository but the page and
the wheels its first command builds; the only text replaced is the wheel directory the
page names (``~/saasfw-wheels``).

- The first command builds the wheels in the checkout (``--no-sources``, as an index would
  serve them).
- The first terminal: the commands up to the service's start (a fresh virtual environment
  holding only those wheels and their third-party dependencies from the index), with the
  files saved where the page saves them; then the page's start command, ``python app.py``
  run as a script (``__main__``), exactly as a user starts it.
- The second terminal, while the service runs: the page's commands from the directory the
  user started in, so ``saasfw dev token`` mints the tokens and curl must get the 201 of
  the user's own authenticated, audited route and the outputs the page shows; then the
  user's own test file, run with ``pytest`` and saasfw's plugin, must pass.
- Then SIGTERM: the service drains and exits 0, and the audit log holds the write.

The service and the second terminal run in a private network namespace (when ``unshare``
is available) so the page's port 8000 is theirs, whatever else runs on this machine.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "getting-started.md"
WHEELS_PLACEHOLDER = "~/saasfw-wheels"
BASE_URL = "http://127.0.0.1:8000"
SERVER = re.compile(r"^(\S+=\S+ )*python app\.py$")
FENCE = re.compile(r"^```(\w*)\s*$")
FILE_NAME = re.compile(r"`([\w./-]+)`:\s*$")

pytestmark = [pytest.mark.slow]


@dataclass(frozen=True)
class Block:
    """One fenced block of the page: its language, its text, and its file name if any."""

    language: str
    body: str
    file: str | None


def page_blocks(text: str) -> list[Block]:
    """The fenced blocks in order; a file block is one whose previous line names the file."""
    blocks: list[Block] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        before = next((line for line in reversed(lines[:index]) if line.strip()), "")
        end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
        body = "\n".join(lines[index + 1 : end]) + "\n"
        named = FILE_NAME.search(before)
        blocks.append(Block(opening.group(1), body, named.group(1) if named else None))
        index = end + 1
    return blocks


def _tutorial() -> list[Block]:
    """The page's blocks up to the next section after the tutorial (``A new project``)."""
    text = PAGE.read_text("utf-8")
    return page_blocks(text.split("\n## A new project", 1)[0])


def _uv_cmd() -> list[str]:
    found = shutil.which("uv")
    return [found] if found else [sys.executable, "-m", "uv"]


def _uv_path(tmp_path: Path, path: str) -> str:
    """``path``, with a shim directory first when ``uv`` does not run from it."""
    if shutil.which("uv", path=path):
        return path
    shim = tmp_path / "uv-shim"
    shim.mkdir()
    command = " ".join(shlex.quote(part) for part in _uv_cmd())
    (shim / "uv").write_text(f'#!/bin/sh\nexec {command} "$@"\n', "utf-8")
    (shim / "uv").chmod(0o755)
    return os.pathsep.join([str(shim), path])


def _user_env(tmp_path: Path) -> dict[str, str]:
    """A user's shell: no virtual environment, no SAASFW_* settings, no test-runner state."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SAASFW_", "UV_", "PYTHON", "PYTEST_", "VIRTUAL_ENV"))
    }
    workspace_bin = str(Path(sys.prefix) / "bin")  # this checkout's own environment
    path = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != workspace_bin)
    env["PATH"] = _uv_path(tmp_path, path)
    env["NO_COLOR"] = "1"
    return env


def _script(blocks: list[Block], wheels: Path, files: Path) -> str:
    """Commands verbatim; each file saved (a verbatim copy) in the shell's directory."""
    lines: list[str] = []
    for number, block in enumerate(blocks):
        if block.file is not None:
            saved = files / f"{number:02d}"
            saved.write_text(block.body, "utf-8")
            target = shlex.quote(block.file)
            lines.append(f'mkdir -p -- "$(dirname -- {target})"')
            lines.append(f"cp -- {shlex.quote(str(saved))} {target}")
        elif block.language == "bash":
            lines.append(block.body.replace(WHEELS_PLACEHOLDER, str(wheels)))
    return "\n".join(lines)


def _network_namespace() -> list[str]:
    """A private network namespace (loopback only) when this machine allows one."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return []
    probe = subprocess.run([unshare, "-rn", "true"], capture_output=True, check=False)
    return [unshare, "-rn"] if probe.returncode == 0 else []


# The two terminals while the service runs: the first starts it (in its own state: the
# directory and the variables the first terminal's commands left), the second waits for
# it to answer, as a user waits for the banner, then types its commands.
DRIVER = """
set -u
ip link set lo up 2>/dev/null || true
( cd "$T1_DIR" && . "$T1_ENV" && set +u && . "$SERVER_SCRIPT" ) > "$OUT/server.log" 2>&1 &
server=$!
for _ in $(seq 1 360); do
  curl -sf "$BASE_URL/health/ready" > /dev/null 2>&1 && break
  kill -0 "$server" 2> /dev/null || break
  sleep 0.5
done
( cd "$HOME_DIR" && bash -euo pipefail "$T2_SCRIPT" ) > "$OUT/terminal2.log" 2>&1
echo $? > "$OUT/terminal2.status"
# SIGTERM to the service itself (the child of the first terminal), as Kubernetes stops it.
kill -TERM $(pgrep -P "$server" || echo "$server") 2> /dev/null
wait "$server"
echo $? > "$OUT/server.status"
"""


def _serve_and_drive(
    out: Path,
    *,
    first_dir: Path,
    first_env: Path,
    server: str,
    second: str,
    second_dir: Path,
    env: dict[str, str],
) -> None:
    """Start ``server`` in the first terminal's state, run ``second`` while it serves, stop it.

    Leaves ``server.log``, ``server.status``, ``terminal2.log`` and ``terminal2.status`` in
    ``out``.
    """
    (out / "server.sh").write_text(server, "utf-8")
    (out / "t2.sh").write_text(second, "utf-8")
    driver_env = {
        **env,
        "T1_DIR": str(first_dir),
        "T1_ENV": str(first_env),
        "SERVER_SCRIPT": str(out / "server.sh"),
        "T2_SCRIPT": str(out / "t2.sh"),
        "HOME_DIR": str(second_dir),
        "OUT": str(out),
        "BASE_URL": BASE_URL,
    }
    subprocess.run(
        [*_network_namespace(), "bash", "-c", DRIVER], env=driver_env, timeout=900, check=False
    )


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str], timeout: float) -> str:
    done = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{cmd[:3]} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def test_page_blocks_are_files_commands_and_outputs() -> None:
    """The page keeps to the form this test follows (cheap; no build)."""
    blocks = _tutorial()
    commands = [b for b in blocks if b.language == "bash"]
    assert WHEELS_PLACEHOLDER in commands[0].body
    assert "uv build" in commands[0].body
    assert sum(bool(SERVER.match(b.body.strip())) for b in commands) == 1
    assert {b.file for b in blocks if b.file} >= {
        "pyproject.toml",
        "config/notes/base.yaml",
        "migrations/0001_notes.py",
        "app.py",
        "tests/test_notes.py",
    }
    for block in blocks:
        assert block.language in ("bash", "text") or block.file, f"unnamed file block: {block}"
    assert f"<{BASE_URL}>" in PAGE.read_text("utf-8")


def test_getting_started_verbatim_in_a_clean_environment(tmp_path: Path) -> None:
    blocks = _tutorial()
    commands = [i for i, b in enumerate(blocks) if b.language == "bash"]
    build, start = commands[0], next(i for i in commands if SERVER.match(blocks[i].body.strip()))
    env = _user_env(tmp_path)
    wheels, files, out, home = (tmp_path / n for n in ("wheels", "files", "out", "home"))
    for directory in (files, out, home):
        directory.mkdir()

    # In the saasfw checkout: the page's build command.
    _run(
        ["bash", "-euo", "pipefail", "-c", _script([blocks[build]], wheels, files)],
        cwd=ROOT,
        env=env,
        timeout=900,
    )
    built = sorted(p.name for p in wheels.glob("*.whl"))
    assert len(built) == len(list(ROOT.glob("packages/*/pyproject.toml"))), built

    # The first terminal, up to the start command; it leaves its directory and variables.
    first = _script(blocks[build + 1 : start], wheels, files)
    first += f"\npwd > {out}/t1.dir\nexport -p > {out}/t1.env\n"
    _run(["bash", "-euo", "pipefail", "-c", first], cwd=home, env=env, timeout=900)
    venv_python = Path((out / "t1.dir").read_text().strip()) / ".venv" / "bin" / "python"
    installed = _run(
        [*_uv_cmd(), "pip", "list", "--python", str(venv_python), "--format=json"],
        cwd=home,
        env=env,
        timeout=120,
    )
    saasfw = {d["name"] for d in json.loads(installed) if d["name"].startswith("saasfw")}
    assert len(saasfw) == len(built), saasfw

    _serve_and_drive(
        out,
        first_dir=Path((out / "t1.dir").read_text().strip()),
        first_env=out / "t1.env",
        server=blocks[start].body,
        second=_script(blocks[start + 1 :], wheels, files),
        second_dir=home,
        env=env,
    )
    server_log = (out / "server.log").read_text("utf-8", errors="replace")
    terminal2 = (out / "terminal2.log").read_text("utf-8", errors="replace")
    assert (out / "terminal2.status").read_text().strip() == "0", (terminal2, server_log[-4000:])
    assert "Traceback" not in server_log, server_log[-6000:]
    # What the page shows the commands print, they print: the 201 first of all.
    for block in blocks[start + 1 :]:
        if block.language == "text":
            assert block.body in terminal2, (block.body, terminal2)
    assert '"author":"alice"}\n201\n' in terminal2
    assert re.search(r"^3 passed", terminal2, re.M), terminal2[-4000:]
    assert (out / "server.status").read_text().strip() == "0", server_log[-4000:]

    project = Path((out / "t1.dir").read_text().strip())
    audit = (project / "var" / "notes" / "audit" / "audit.jsonl").read_text("utf-8")
    created = [json.loads(line) for line in audit.splitlines() if '"note.created"' in line]
    assert len(created) == 1, audit[-3000:]
    assert "alice" in json.dumps(created[0]), created


README = ROOT / "packages" / "saasfw" / "README.md"
README_SERVER = re.compile(r"^(\S+=\S+ )*python billing\.py$")


def test_umbrella_readme_service_and_its_test_run_as_written(tmp_path: Path) -> None:
    """The umbrella README's service, saved and started as it says; then its sample test."""
    text = README.read_text("utf-8")
    section = text.split("## A service\n", 1)[1].split("## What `create_app` composes", 1)[0]
    blocks = page_blocks(section)
    project, out = tmp_path / "billing", tmp_path / "out"
    project.mkdir()
    out.mkdir()
    for block in blocks:
        if block.file is not None:
            (project / block.file).parent.mkdir(parents=True, exist_ok=True)
            (project / block.file).write_text(block.body, "utf-8")
    commands = [
        b.body.strip() for b in blocks if b.language == "sh" and "pip install" not in b.body
    ]
    start = next(c for c in commands if README_SERVER.match(c))
    # A user's shell in this checkout's environment (saasfw installed), with no SAASFW_*.
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("SAASFW_", "PYTEST_", "PYTHON"))
    }
    env["PATH"] = os.pathsep.join([str(Path(sys.prefix) / "bin"), env.get("PATH", "")])
    env["NO_COLOR"] = "1"

    refused = subprocess.run(
        ["bash", "-c", "python billing.py"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert refused.returncode == 78, refused.stdout + refused.stderr  # production, as it says

    (out / "t1.env").write_text(
        subprocess.run(
            ["bash", "-c", "export -p"], env=env, capture_output=True, text=True, check=True
        ).stdout,
        "utf-8",
    )
    probes = (
        f"curl -sS -w ' %{{http_code}}\\n' {BASE_URL}/hello\n"
        f"curl -sS -o /dev/null -w '%{{http_code}}\\n' {BASE_URL}/invoices\n"
    )
    _serve_and_drive(
        out,
        first_dir=project,
        first_env=out / "t1.env",
        server=start,
        second=probes,
        second_dir=project,
        env=env,
    )
    served = (out / "terminal2.log").read_text("utf-8")
    server_log = (out / "server.log").read_text("utf-8", errors="replace")
    assert served == '{"message":"hello"} 200\n401\n', (served, server_log[-4000:])
    assert (out / "server.status").read_text().strip() == "0", server_log[-4000:]

    tests = next(c for c in commands if c.startswith("pytest"))
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", tests],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"^3 passed", result.stdout, re.M), result.stdout[-2000:]
