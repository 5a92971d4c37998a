"""``saasfw-k8s``: render manifests, build a kustomization, serve an app with drain on SIGTERM."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from saasfw.k8s._errors import K8sError, RenderError


def _parse_settings_file(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RenderError(f"cannot read settings file {path}: {exc}", where=str(path)) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise RenderError(f"settings file {path} must hold a mapping", where=str(path))
    return loaded


def _apply_set(settings: dict[str, Any], assignment: str) -> None:
    key, sep, value = assignment.partition("=")
    if not sep or not key:
        raise RenderError(f"--set {assignment!r} must be KEY=VALUE", where=assignment)
    if key.isupper():
        settings[key] = value
        return
    node = settings
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise RenderError(f"--set {key}: {part!r} is not a section", where=key)
        node = child
    node[parts[-1]] = value


def _render(args: argparse.Namespace) -> int:
    from saasfw.k8s import _kustomize, _manifests, _spec
    from saasfw.k8s._settings import K8sSettings
    from saasfw.k8s._settings_env import settings_to_env

    settings: dict[str, Any] = {}
    if args.settings is not None:
        settings = _parse_settings_file(Path(args.settings))
    for assignment in args.set or []:
        _apply_set(settings, assignment)
    try:
        k8s = K8sSettings.model_validate(settings.get("k8s") or {})
    except ValidationError as exc:
        raise RenderError(f"invalid k8s settings: {exc}", where="k8s") from None
    spec = _spec.ManifestSpec(
        service=args.service,
        image=args.image,
        namespace=args.namespace,
        port=args.port,
        config=settings_to_env(settings),
        secrets=tuple(args.secret or ()),
        k8s=k8s,
        env_var=args.env_var or None,
        egress_ports=tuple(args.egress_port) if args.egress_port else (5432, 6379, 4317, 4318),
        service_monitor=args.service_monitor,
        route_hostnames=tuple(args.route_host or ()),
        gateway=args.gateway,
    )
    files = _manifests.render(spec, args.env)
    if args.validate:
        from saasfw.k8s._validate import validate_manifests

        # Built and validated in a scratch directory first: invalid output is never written.
        with tempfile.TemporaryDirectory(prefix="saasfw-k8s-") as scratch:
            _manifests.write_tree(files, Path(scratch))
            for tree in ["base", *(f"overlays/{env}" for env in dict.fromkeys(args.env))]:
                resources = _kustomize.build(Path(scratch) / tree)
                validate_manifests(resources, version=args.kubernetes_version)
    written = _manifests.write_tree(files, Path(args.out))
    for path in written:
        print(path)
    return 0


def _build(args: argparse.Namespace) -> int:
    from saasfw.k8s._kustomize import build

    resources = build(Path(args.directory))
    sys.stdout.write(yaml.safe_dump_all(resources, sort_keys=False))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from saasfw.k8s._server import serve

    serve(
        args.app,
        host=args.host,
        port=args.port,
        factory=args.factory,
        app_dir=args.app_dir or None,
        log_level=args.log_level,
        proxy_headers=args.forwarded_allow_ips is not None,
        forwarded_allow_ips=args.forwarded_allow_ips,
        server_header=False,
    )
    return 0


def _parser() -> argparse.ArgumentParser:
    from saasfw.k8s._manifests import KUBERNETES_VERSION

    parser = argparse.ArgumentParser(prog="saasfw-k8s", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    render = commands.add_parser("render", help="write a Kustomize base and overlays")
    render.add_argument("--service", required=True, help="service name (a DNS label)")
    render.add_argument(
        "--env", required=True, action="append", help="overlay to write (repeatable)"
    )
    render.add_argument("--image", required=True, help="container image reference")
    render.add_argument("--out", required=True, help="output directory")
    render.add_argument("--settings", help="YAML/JSON file of effective, non-secret settings")
    render.add_argument("--set", action="append", metavar="KEY=VALUE", help="one setting")
    render.add_argument("--secret", action="append", metavar="NAME", help="Secret to envFrom")
    render.add_argument("--namespace", help="namespace (default: the service name)")
    render.add_argument("--port", type=int, default=8000, help="container port (default 8000)")
    render.add_argument(
        "--env-var", default="SAASFW_ENV", help="variable naming the environment ('' to omit)"
    )
    render.add_argument("--egress-port", type=int, action="append", help="allowed TCP egress")
    render.add_argument("--service-monitor", action="store_true", help="add a ServiceMonitor")
    render.add_argument("--route-host", action="append", help="HTTPRoute hostname")
    render.add_argument("--gateway", help="Gateway for the HTTPRoute: NAME or NAMESPACE/NAME")
    render.add_argument(
        "--kubernetes-version", default=KUBERNETES_VERSION, help="schema version to validate"
    )
    render.add_argument(
        "--no-validate", dest="validate", action="store_false", help="skip schema validation"
    )
    render.set_defaults(handler=_render)

    build = commands.add_parser("build", help="print a kustomization built (resources/patches)")
    build.add_argument("directory")
    build.set_defaults(handler=_build)

    serve = commands.add_parser("serve", help="run an ASGI app; SIGTERM drains, then exits 0")
    serve.add_argument("app", help="MODULE:ATTRIBUTE of the ASGI app")
    serve.add_argument(
        "--host",
        default=os.environ.get("HOST", "0.0.0.0"),  # noqa: S104  # nosec B104
        help="bind address (default $HOST or 0.0.0.0)",
    )
    serve.add_argument(
        "--port", type=int, default=int(os.environ.get("PORT", "8000")), help="default $PORT"
    )
    serve.add_argument("--app-dir", default="", help="directory added to sys.path")
    serve.add_argument("--factory", action="store_true", help="APP is a factory to call")
    serve.add_argument("--log-level", default="info")
    serve.add_argument(
        "--forwarded-allow-ips", default=None, help="trusted proxies for X-Forwarded-*"
    )
    serve.set_defaults(handler=_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``saasfw-k8s`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        status: int = args.handler(args)
    except K8sError as exc:
        print(f"saasfw-k8s {args.command}: {exc}", file=sys.stderr)
        return 2
    return status


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
