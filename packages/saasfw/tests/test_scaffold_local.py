"""Acceptance: ``saasfw new`` before saasfw is published, as a stranger to this repository.

The workspace's wheels are built as an index would serve them (``--no-sources``). ``saasfw
new demo --wheels DIR`` generates the project; the exact next step it prints runs in a clean
environment (no virtual environment, no SAASFW_* variables) where a second package source
offers higher-versioned impostors of every saasfw distribution, as a stranger's upload to
a public index would. The project's tests must pass on the local wheels, and never on an
impostor, and the lock must hold in a copy elsewhere. Then the project is installed the
way its Dockerfile does it (a copy, ``uv sync --locked --no-dev --no-editable``; no Docker
daemon needed) and that install serves under its real uvicorn, accepting the token
``saasfw dev token`` mints in development, while production refuses to mint one.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent


def _uv() -> list[str]:
    """uv itself, or a Python that has it as a module (``python3 -m uv``)."""
    found = shutil.which("uv")
    if found:
        return [found]
    for python in (sys.executable, getattr(sys, "_base_executable", ""), "python3"):
        probe = [python, "-m", "uv", "--version"]
        if python and subprocess.run(probe, capture_output=True, check=False).returncode == 0:
            return [python, "-m", "uv"]
    raise AssertionError("this test needs uv (pip install uv)")


def _uv_on_path(tmp_path: Path) -> str:
    """A PATH where ``uv`` runs, as the printed next step expects."""
    path = os.environ.get("PATH", "")
    if shutil.which("uv", path=path):
        return path
    shim = tmp_path / "uv-shim"
    shim.mkdir()
    command = " ".join(f'"{part}"' for part in _uv())
    (shim / "uv").write_text(f'#!/bin/sh\nexec {command} "$@"\n', "utf-8")
    (shim / "uv").chmod(0o755)
    return os.pathsep.join([str(shim), path])


def _clean_env(tmp_path: Path, impostors: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SAASFW_", "UV_PROJECT", "UV_FIND_LINKS", "PYTHON"))
        and k not in ("VIRTUAL_ENV", "UV_NO_SOURCES", "UV_OFFLINE")
    }
    env["PATH"] = _uv_on_path(tmp_path)
    env["UV_FIND_LINKS"] = str(impostors)  # a non-explicit source uv consults for any name
    return env


def _impostor(directory: Path, wheel: Path) -> None:
    """A wheel of the same name with a higher version that fails loudly when imported."""
    name, version = wheel.name.split("-")[:2]
    major, minor, _ = version.split(".")
    bumped = f"{major}.{minor}.99"
    stem = f"{name}-{bumped}"
    target = directory / f"{stem}-py3-none-any.whl"
    metadata = f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {bumped}\n"
    with zipfile.ZipFile(target, "w") as archive:
        archive.writestr(f"{name}_impostor.py", "raise SystemExit('impostor installed')\n")
        archive.writestr(f"{stem}.dist-info/METADATA", metadata)
        archive.writestr(
            f"{stem}.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        archive.writestr(f"{stem}.dist-info/RECORD", "")


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    out = tmp_path / "dist"
    subprocess.run(
        [*_uv(), "build", "--all-packages", "--no-sources", "--wheel", "-q", "--out-dir", str(out)],
        cwd=ROOT,
        check=True,
    )
    return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_ready(url: str, server: subprocess.Popen[str], deadline: float = 90.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if server.poll() is not None:
            raise AssertionError(f"the service exited with {server.returncode}")
        try:
            if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise AssertionError("the service never became ready")


@pytest.mark.slow
def test_new_project_from_local_wheels_only(tmp_path: Path, wheels: Path) -> None:
    impostors = tmp_path / "impostors"
    impostors.mkdir()
    for wheel in wheels.glob("saasfw*.whl"):
        _impostor(impostors, wheel)
    env = _clean_env(tmp_path, impostors)
    work = tmp_path / "work"
    work.mkdir()

    created = subprocess.run(
        [str(BIN / "saasfw"), "new", "demo", "--wheels", str(wheels)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    lines = created.stdout.splitlines()
    next_step = lines[lines.index(next(line for line in lines if line.endswith("next:"))) + 1]
    assert next_step.strip().endswith("uv run pytest"), created.stdout

    ran = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", next_step.strip()],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert re.search(r"\b4 passed\b", ran.stdout), ran.stdout[-2000:]

    project = work / "demo"
    lock = tomllib.loads((project / "uv.lock").read_text("utf-8"))
    saasfw = {p["name"]: p for p in lock["package"] if p["name"].startswith("saasfw")}
    assert set(saasfw) == {w.name.split("-")[0].replace("_", "-") for w in wheels.glob("*.whl")}
    for name, package in saasfw.items():
        assert package["source"]["path"].startswith("wheels/"), (name, package["source"])
        assert not package["version"].endswith(".99"), name
    assert str(tmp_path) not in (project / "uv.lock").read_text("utf-8")  # a portable lock

    image = _install_as_the_dockerfile_does(project, tmp_path / "image", env)
    _serve_and_call_with_a_dev_token(project, image, env)


def _install_as_the_dockerfile_does(project: Path, image: Path, env: dict[str, str]) -> Path:
    """The Dockerfile's build steps, without Docker: a copy elsewhere, the locked install."""
    build = image / "src"
    build.mkdir(parents=True)
    for name in ("pyproject.toml", "uv.lock", "README.md"):
        shutil.copy(project / name, build / name)
    shutil.copytree(project / "wheels", build / "wheels")
    venv = {**env, "UV_PROJECT_ENVIRONMENT": str(image / "venv"), "UV_LINK_MODE": "copy"}
    sync = [*_uv(), "sync", "-q", "--locked", "--no-dev"]
    subprocess.run([*sync, "--no-install-project"], cwd=build, env=venv, check=True)
    shutil.copytree(project / "src", build / "src")
    subprocess.run([*sync, "--no-editable"], cwd=build, env=venv, check=True)
    shutil.copytree(project / "config", image / "config")
    shutil.rmtree(build)  # the runtime stage has only the environment and the settings
    return image


def _serve_and_call_with_a_dev_token(project: Path, image: Path, env: dict[str, str]) -> None:
    data = image / "data"
    data.mkdir()
    tool = [str(project / ".venv" / "bin" / "saasfw"), "dev", "token", "--sub", "ada"]
    refused = subprocess.run(
        [*tool, "--roles", "reader"],
        cwd=project,
        env={**env, "SAASFW_ENV": "production"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 78, refused.stderr
    assert refused.stdout == ""
    assert "refused in the 'production' environment" in refused.stderr

    dev = {**env, "SAASFW_ENV": "development", "SAASFW_DATA_DIR": str(data)}
    minted = subprocess.run(
        [*tool, "--roles", "reader"],
        cwd=project,
        env=dev,
        capture_output=True,
        text=True,
        check=False,
    )
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()

    port = _free_port()
    server = subprocess.Popen(  # the image's command, environment and working directory
        [str(image / "venv" / "bin" / "demo")],
        cwd=data,
        env={**dev, "SAASFW_HTTP__PORT": str(port), "SAASFW_CONFIG_DIR": str(image / "config")},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, server)
        me = httpx.get(f"{url}/me", headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert me.status_code == 200, me.text
        assert me.json() == {"id": "ada", "tenant": None, "roles": ["reader"]}
        assert httpx.get(f"{url}/me", timeout=5).status_code == 401
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            output, _ = server.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            output, _ = server.communicate()
    assert server.returncode == 0, output[-3000:]
