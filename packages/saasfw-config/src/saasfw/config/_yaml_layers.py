"""The YAML layers: the configuration directory's four files, read in rank order.

``config/base.yaml``, ``config/<service>/base.yaml``, ``config/<env>.yaml`` and
``config/<service>/<env>.yaml``, each optional; a YAML file there that is none of these is
refused, since a misspelt layer would otherwise be silently ignored.
"""

from __future__ import annotations

import os
from pathlib import Path

from saasfw.config._environments import ENVIRONMENTS
from saasfw.config._errors import Problem
from saasfw.config._files import FileProblem, read_text
from saasfw.config._state import LoadState, Source


def yaml_layers(
    run: LoadState, config_dir: str | os.PathLike[str] | None, auto: bool, service: str
) -> Path | None:
    """Merge every YAML layer of ``service``; the directory used, or None without one.

    With ``auto`` the directory is ``$SAASFW_CONFIG_DIR`` (required) else ``config``
    (optional); otherwise ``config_dir`` (required), None disabling YAML.
    """
    directory: Path | None
    if auto:
        directory = Path(run.environ.get("SAASFW_CONFIG_DIR", "config"))
        directory_required = "SAASFW_CONFIG_DIR" in run.environ
    else:
        directory = None if config_dir is None else Path(config_dir)
        directory_required = directory is not None
    if directory is not None and not directory.is_dir():
        if directory_required:
            what = "is not a directory" if directory.exists() else "does not exist"
            run.problems.append(
                Problem("", str(directory), f"configuration directory {what}", "file")
            )
        directory = None
    if directory is not None:
        service_dir = directory / service
        _check_layer_names(run, directory, str(directory))
        if service_dir.is_dir():
            _check_layer_names(run, service_dir, str(service_dir))
        for layer in (
            directory / "base.yaml",
            service_dir / "base.yaml",
            directory / f"{run.env}.yaml",
            service_dir / f"{run.env}.yaml",
        ):
            yaml_layer(run, layer, str(layer))
    return directory


def yaml_layer(run: LoadState, path: Path, display: str) -> None:
    """Merge one YAML file, if it exists, with the line of every value it sets."""
    if not os.path.lexists(path):
        return
    from saasfw.config._yaml import parse_yaml

    try:
        text = read_text(path)
    except FileProblem as exc:
        run.problem((), display, f"configuration file {exc.reason}", exc.kind)
        return
    doc = parse_yaml(text, display, run.lookup)
    run.problems.extend(doc.problems)
    run.reported.update(doc.reported)
    run.merge(doc.data, Source(display, doc.lines))


def _check_layer_names(run: LoadState, directory: Path, display: str) -> None:
    """Refuse YAML files that look like layers but would be silently ignored (typos)."""
    allowed = {"base.yaml", *(f"{env}.yaml" for env in ENVIRONMENTS)}
    try:
        names = sorted(entry.name for entry in directory.iterdir() if entry.is_file())
    except OSError:
        return
    for name in names:
        if name.endswith((".yaml", ".yml")) and name not in allowed:
            run.problems.append(
                Problem(
                    "",
                    f"{display}/{name}",
                    "not a configuration layer: expected base.yaml or <env>.yaml with env "
                    "one of " + ", ".join(ENVIRONMENTS),
                    "unknown_layer",
                )
            )
