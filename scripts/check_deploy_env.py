"""Fail when a deploy asset sets a SAASFW_* variable that names no setting of the service.

The loader ignores nothing: an unknown top-level ``SAASFW_*`` variable is a warning, and in
production a refusal to start. This check finds such variables before a deploy does, in
every asset that sets them: the compose file (and its env files), the Dockerfile's ``ENV``
and the rendered Kubernetes manifests (ConfigMaps, Secrets, container ``env``). Each name
is resolved against the service's settings model exactly as the loader resolves it
(``saasfw.config.unknown_variables``).

    python scripts/check_deploy_env.py [--root DIR] [--model package.module:Class]
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from saasfw.config import unknown_variables

DEFAULT_MODEL = "orders_service._settings:OrdersSettings"
PREFIX = "SAASFW_"
_WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod", "ReplicaSet"}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

Found = dict[str, list[str]]  # variable name -> where it is set


def _add(found: Found, name: Any, where: str) -> None:
    if isinstance(name, str) and name.upper().startswith(PREFIX):
        found.setdefault(name, []).append(where)


def _yaml_documents(path: Path) -> Iterator[Any]:
    with path.open(encoding="utf-8") as stream:
        yield from yaml.safe_load_all(stream)


def _env_file(path: Path, found: Found, where: str) -> None:
    for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        text = line.strip().removeprefix("export ").strip()
        if text and not text.startswith("#"):
            _add(found, text.partition("=")[0].strip(), f"{where}:{number}")


def compose_variables(path: Path, root: Path, found: Found) -> None:
    """``environment`` (mapping or ``KEY=VALUE`` list) and ``env_file`` of every service."""
    shown = path.relative_to(root)
    for document in _yaml_documents(path):
        services = (document or {}).get("services") or {}
        for service_name, service in services.items():
            where = f"{shown} (services.{service_name}.environment)"
            environment = (service or {}).get("environment") or {}
            if isinstance(environment, dict):
                names = list(environment)
            else:
                names = [str(item).partition("=")[0] for item in environment]
            for name in names:
                _add(found, name, where)
            env_files = (service or {}).get("env_file") or []
            for entry in [env_files] if isinstance(env_files, (str, dict)) else env_files:
                file_name = entry.get("path") if isinstance(entry, dict) else entry
                env_path = path.parent / str(file_name)
                if env_path.is_file():  # an optional env file may be absent (required: false)
                    _env_file(env_path, found, str(env_path.relative_to(root)))


def dockerfile_variables(path: Path, root: Path, found: Found) -> None:
    """Names set by ``ENV`` instructions (``KEY=VALUE`` pairs and the old ``ENV KEY VALUE``)."""
    shown = path.relative_to(root)
    logical: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        if not pending:
            start = number
            if line.lstrip().startswith("#"):
                continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append((start, pending + line))
        pending = ""
    for number, text in logical:
        instruction, _, rest = text.strip().partition(" ")
        if instruction.upper() != "ENV":
            continue
        words = rest.split()
        if words and "=" not in words[0]:
            names = [words[0]]  # ENV KEY value with spaces
        else:
            names = [word.partition("=")[0] for word in words if "=" in word]
        for name in names:
            if _ENV_NAME.fullmatch(name):
                _add(found, name, f"{shown}:{number} (ENV)")


def _pod_spec(document: dict[str, Any]) -> dict[str, Any]:
    spec = document.get("spec") or {}
    if document.get("kind") == "Pod":
        return spec
    if document.get("kind") == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    return ((spec.get("template") or {}).get("spec")) or {}


def manifest_variables(path: Path, root: Path, found: Found) -> None:
    """ConfigMap/Secret keys (they become variables through envFrom) and container env."""
    shown = path.relative_to(root)
    for document in _yaml_documents(path):
        if not isinstance(document, dict):
            continue
        kind = document.get("kind")
        name = (document.get("metadata") or {}).get("name", "?")
        if kind in ("ConfigMap", "Secret"):
            for field in ("data", "stringData"):
                for key in document.get(field) or {}:
                    _add(found, key, f"{shown} ({kind} {name} {field})")
        elif kind in _WORKLOADS:
            spec = _pod_spec(document)
            for container in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
                for variable in container.get("env") or []:
                    _add(found, variable.get("name"), f"{shown} ({kind} {name} env)")


def collect(root: Path) -> Found:
    """Every SAASFW_* variable the deploy assets under ``root/deploy`` set, with where."""
    deploy = root / "deploy"
    found: Found = {}
    for compose in sorted(deploy.glob("*compose*.y*ml")):
        compose_variables(compose, root, found)
    for dockerfile in sorted(deploy.glob("Dockerfile*")):
        if not dockerfile.name.endswith(".dockerignore"):
            dockerfile_variables(dockerfile, root, found)
    for manifest in sorted([*deploy.glob("k8s/**/*.yaml"), *deploy.glob("k8s/**/*.yml")]):
        manifest_variables(manifest, root, found)
    return found


def problems(root: Path, model: type[BaseModel]) -> list[str]:
    """One line per variable that names no setting of ``model``: where it is set and why."""
    found = collect(root)
    return [
        f"{problem.source}: {problem.message}\n    set in: " + "; ".join(found[problem.source])
        for problem in unknown_variables(model, sorted(found))
    ]


def load_model(spec: str) -> type[BaseModel]:
    module_name, _, attribute = spec.partition(":")
    model = getattr(importlib.import_module(module_name), attribute)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise SystemExit(f"--model {spec!r} is not a pydantic model class")
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="settings model (module:Class)")
    args = parser.parse_args(argv)
    model = load_model(args.model)
    found = problems(args.root, model)
    for line in found:
        print(line, file=sys.stderr)
    if found:
        print(
            f"deploy env: {len(found)} SAASFW_ variable(s) name no setting of {args.model}; "
            "fix the name, or remove the variable",
            file=sys.stderr,
        )
        return 1
    print(
        f"deploy env: every SAASFW_ variable the deploy assets set names a setting of {args.model}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
