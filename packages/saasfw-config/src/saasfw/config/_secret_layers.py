"""The secret-file layers: a secrets directory, then the files ``*_FILE`` variables name.

A secret file holds one value (one trailing newline dropped), is size-limited, and in
production is refused when other users can read it; every value read is taught to the
redactor so no message ever carries it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from saasfw.config._errors import Problem
from saasfw.config._files import MAX_SECRET_BYTES, FileProblem, file_stat, read_text
from saasfw.config._model import annotation_at
from saasfw.config._state import LoadState, Source
from saasfw.config._variables import ENV_PREFIX, resolve_variable


def secret_layers(run: LoadState, secrets_dir: str | os.PathLike[str] | None) -> None:
    """The secrets directory (when given), then the files ``*_FILE`` variables point at."""
    if secrets_dir is not None:
        secrets_dir_layer(run, Path(secrets_dir))
    pointer_layer(run)


def read_secret(run: LoadState, path: Path, label: str) -> str | None:
    """One secret file's value, or None with the problem recorded."""
    try:
        info = file_stat(path)
        world_readable = stat.S_ISREG(info.st_mode) and info.st_mode & stat.S_IROTH
        if run.env == "production" and world_readable:
            raise FileProblem(
                f"is readable by other users (mode {stat.S_IMODE(info.st_mode):04o}); "
                "production refuses it: chmod o-r (Kubernetes: defaultMode 0440)",
                "secret_permissions",
            )
        text = read_text(path, limit=MAX_SECRET_BYTES)
    except FileProblem as exc:
        run.problems.append(Problem("", label, f"secret file {exc.reason}", exc.kind))
        return None
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    run.redact.add(text)
    return text


def secrets_dir_layer(run: LoadState, directory: Path) -> None:
    """Apply every ``SAASFW_*`` file of ``directory`` as the setting its name names."""
    try:
        entries = sorted(directory.iterdir())
    except OSError as exc:
        reason = "does not exist" if isinstance(exc, FileNotFoundError) else "cannot be read"
        run.problems.append(Problem("", str(directory), f"secrets directory {reason}", "file"))
        return
    for entry in entries:
        # Kubernetes keeps its bookkeeping in dot-entries (..data, ..2024_01_01...).
        if entry.name.startswith(".") or entry.is_dir():
            continue
        if not entry.name.upper().startswith(ENV_PREFIX):
            continue
        rest = entry.name[len(ENV_PREFIX) :]
        path, annotation = resolve_variable(run.model, rest)
        label = f"secrets dir {entry}"
        if path is None:
            if annotation != 0:
                run.problem(
                    (),
                    label,
                    f"unknown setting: {entry.name} does not name a field",
                    "unknown_key",
                )
            else:
                run.unknown.append((entry.name, label))
            continue
        text = read_secret(run, entry, label)
        if text is not None:
            run.assign(path, annotation_at(run.model, path), text, Source(label))


def pointer_layer(run: LoadState) -> None:
    """Apply the files that ``SAASFW_<NAME>_FILE`` variables named."""
    for path, (file_name, origin) in run.pointers.items():
        label = f"secret file {file_name} ({origin.removeprefix('env ')})"
        text = read_secret(run, Path(file_name), label)
        if text is not None:
            run.assign(path, annotation_at(run.model, path), text, Source(label))
