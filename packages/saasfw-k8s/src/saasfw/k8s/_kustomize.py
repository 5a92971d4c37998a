"""A small kustomize build: ``resources`` and ``patches`` (strategic merge and JSON 6902).

It supports what the rendered overlays use and refuses every other kustomization field, so a
build here never silently differs from ``kustomize build`` by ignoring something.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from saasfw.k8s._errors import KustomizeError

_FILENAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
_SUPPORTED = frozenset({"apiVersion", "kind", "resources", "patches"})

# Strategic merge keys (patchMergeKey in the Kubernetes API) of the lists that merge by key;
# other lists are replaced, as in kustomize.
_MERGE_KEYS: Mapping[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
}
# Lists whose merge key depends on the parent: container ports merge by containerPort,
# Service ports by port.
_PORT_KEYS = ("containerPort", "port")


def build(directory: Path) -> list[dict[str, Any]]:
    """Build the kustomization in ``directory`` into a list of resources.

    Raises:
        KustomizeError: no kustomization file, an unsupported field, a patch matching no
            resource, or an invalid JSON patch.
    """
    return _build(directory.resolve(), ())


def _build(directory: Path, seen: tuple[Path, ...]) -> list[dict[str, Any]]:
    if directory in seen:
        raise KustomizeError(f"kustomization cycle through {directory}", where=str(directory))
    path = next((directory / n for n in _FILENAMES if (directory / n).is_file()), None)
    if path is None:
        raise KustomizeError(f"no kustomization file in {directory}", where=str(directory))
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(document, dict):
        raise KustomizeError(f"{path} is not a mapping", where=str(path))
    unsupported = sorted(set(document) - _SUPPORTED)
    if unsupported:
        raise KustomizeError(
            f"{path} uses {', '.join(unsupported)}, which this builder does not support; "
            "use kustomize itself for those",
            where=str(path),
        )
    resources: list[dict[str, Any]] = []
    for entry in document.get("resources") or []:
        target = (directory / str(entry)).resolve()
        if target.is_dir():
            resources.extend(_build(target, (*seen, directory)))
        elif target.is_file():
            docs = yaml.safe_load_all(target.read_text(encoding="utf-8"))
            resources.extend(d for d in docs if d)
        else:
            raise KustomizeError(f"resource {entry!r} of {path} does not exist", where=str(path))
    _check_unique(resources, path)
    for patch in document.get("patches") or []:
        _apply_patch(resources, patch, directory, path)
    return resources


def _identity(resource: Mapping[str, Any]) -> tuple[str, str, str, str]:
    meta = resource.get("metadata") or {}
    return (
        str(resource.get("apiVersion", "")),
        str(resource.get("kind", "")),
        str(meta.get("namespace", "")),
        str(meta.get("name", "")),
    )


def _check_unique(resources: list[dict[str, Any]], path: Path) -> None:
    seen: set[tuple[str, str, str, str]] = set()
    for resource in resources:
        key = _identity(resource)
        if key in seen:
            raise KustomizeError(f"{path}: resource {key} appears twice", where=str(path))
        seen.add(key)


def _group_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


def _matches(resource: Mapping[str, Any], target: Mapping[str, Any]) -> bool:
    group, version = _group_version(str(resource.get("apiVersion", "")))
    meta = resource.get("metadata") or {}
    checks = {
        "group": group,
        "version": version,
        "kind": resource.get("kind"),
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
    }
    for key, value in target.items():
        if key not in checks:
            raise KustomizeError(f"patch target field {key!r} is not supported", where=key)
        if checks[key] != value:
            return False
    return True


def _apply_patch(
    resources: list[dict[str, Any]], patch: Mapping[str, Any], directory: Path, path: Path
) -> None:
    extra = set(patch) - {"path", "patch", "target"}
    if extra or ("path" in patch) == ("patch" in patch):
        raise KustomizeError(
            f"{path}: each patch needs exactly one of 'path' or 'patch' (and maybe 'target')",
            where=str(path),
        )
    text = (
        (directory / str(patch["path"])).read_text(encoding="utf-8")
        if "path" in patch
        else str(patch["patch"])
    )
    content = yaml.safe_load(text)
    target = patch.get("target")
    if isinstance(content, list):
        if not isinstance(target, Mapping):
            raise KustomizeError(f"{path}: a JSON 6902 patch needs a target", where=str(path))
        matched = [i for i, r in enumerate(resources) if _matches(r, target)]
        for index in matched:
            resources[index] = apply_json_patch(resources[index], content)
    elif isinstance(content, dict):
        if target is None:
            group, version = _group_version(str(content.get("apiVersion", "")))
            meta = content.get("metadata") or {}
            target = {"group": group, "version": version, "kind": content.get("kind")}
            target["name"] = meta.get("name")
            if meta.get("namespace"):
                target["namespace"] = meta["namespace"]
        matched = [i for i, r in enumerate(resources) if _matches(r, target)]
        for index in matched:
            resources[index] = strategic_merge(resources[index], content)
    else:
        raise KustomizeError(f"{path}: a patch must be a mapping or a list", where=str(path))
    if not matched:
        raise KustomizeError(f"{path}: patch target {dict(target)} matches no resource")


def strategic_merge(base: Any, patch: Any, field: str | None = None) -> Any:
    """Merge ``patch`` into ``base`` the way a strategic merge patch does (a ``None`` deletes)."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = copy.deepcopy(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            elif key in merged:
                merged[key] = strategic_merge(merged[key], value, key)
            else:
                merged[key] = copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(patch, list):
        key = _merge_key(field, base, patch)
        if key is None:
            return copy.deepcopy(patch)
        merged_list = copy.deepcopy(base)
        for item in patch:
            position = next(
                (
                    i
                    for i, existing in enumerate(merged_list)
                    if isinstance(existing, dict) and existing.get(key) == item.get(key)
                ),
                None,
            )
            if position is None:
                merged_list.append(copy.deepcopy(item))
            else:
                merged_list[position] = strategic_merge(merged_list[position], item)
        return merged_list
    return copy.deepcopy(patch)


def _merge_key(field: str | None, base: list[Any], patch: list[Any]) -> str | None:
    items = [*base, *patch]
    if not items or not all(isinstance(i, dict) for i in items):
        return None
    if field == "ports":
        return next((k for k in _PORT_KEYS if all(k in i for i in items)), None)
    key = _MERGE_KEYS.get(field or "")
    if key is not None and all(key in i for i in patch):
        return key
    return None


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise KustomizeError(f"JSON pointer {path!r} must start with '/'", where=path)
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def apply_json_patch(document: dict[str, Any], operations: list[Any]) -> dict[str, Any]:
    """Apply RFC 6902 ``add``, ``remove``, ``replace`` and ``test`` operations to a copy."""
    result = copy.deepcopy(document)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise KustomizeError(f"invalid JSON patch operation {operation!r}")
        op, parts = operation["op"], _pointer(str(operation["path"]))
        if not parts:
            raise KustomizeError("JSON patch operations on the whole document are not supported")
        parent: Any = result
        for part in parts[:-1]:
            parent = _step(parent, part, str(operation["path"]))
        last = parts[-1]
        if op == "test":
            if _step(parent, last, str(operation["path"])) != operation.get("value"):
                raise KustomizeError(f"JSON patch test failed at {operation['path']}")
        elif op in ("add", "replace"):
            if "value" not in operation:
                raise KustomizeError(f"JSON patch {op} at {operation['path']} needs a value")
            value = copy.deepcopy(operation["value"])
            if isinstance(parent, list):
                index = len(parent) if last == "-" else _index(parent, last, op == "add")
                if op == "add":
                    parent.insert(index, value)
                else:
                    parent[index] = value
            elif isinstance(parent, dict):
                if op == "replace" and last not in parent:
                    raise KustomizeError(f"JSON patch replace: {operation['path']} is absent")
                parent[last] = value
            else:
                raise KustomizeError(f"JSON patch {op}: parent of {operation['path']} is a value")
        elif op == "remove":
            if isinstance(parent, list):
                del parent[_index(parent, last, False)]
            elif isinstance(parent, dict) and last in parent:
                del parent[last]
            else:
                raise KustomizeError(f"JSON patch remove: {operation['path']} is absent")
        else:
            raise KustomizeError(f"JSON patch operation {op!r} is not supported", where=op)
    return result


def _step(node: Any, part: str, path: str) -> Any:
    if isinstance(node, dict) and part in node:
        return node[part]
    if isinstance(node, list):
        return node[_index(node, part, False)]
    raise KustomizeError(f"JSON pointer {path} does not exist", where=path)


def _index(items: list[Any], part: str, allow_end: bool) -> int:
    if not part.isdigit():
        raise KustomizeError(f"{part!r} is not a list index")
    index = int(part)
    if index > len(items) or (index == len(items) and not allow_end):
        raise KustomizeError(f"list index {index} is out of range")
    return index
