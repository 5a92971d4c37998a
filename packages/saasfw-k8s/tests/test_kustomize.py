"""The built-in kustomize subset: strategic merge, JSON 6902 and refusal of the rest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from saasfw.k8s import KustomizeError, build_kustomization
from saasfw.k8s._kustomize import apply_json_patch, strategic_merge

DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "ns"},
    "spec": {
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "app",
                        "image": "a:1",
                        "args": ["--one"],
                        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                        "ports": [{"containerPort": 8000, "name": "http"}],
                    },
                    {"name": "sidecar", "image": "s:1"},
                ]
            }
        }
    },
}


def test_strategic_merge_merges_keyed_lists_and_replaces_plain_ones() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "a:2",
                            "args": ["--two"],
                            "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
                            "ports": [{"containerPort": 9000, "name": "admin"}],
                        }
                    ]
                }
            }
        }
    }
    merged = strategic_merge(DEPLOYMENT, patch)
    app, sidecar = merged["spec"]["template"]["spec"]["containers"]
    assert app["image"] == "a:2"
    assert app["args"] == ["--two"]
    assert app["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "3"},
        {"name": "C", "value": "4"},
    ]
    assert [p["containerPort"] for p in app["ports"]] == [8000, 9000]
    assert sidecar == {"name": "sidecar", "image": "s:1"}
    assert DEPLOYMENT["spec"]["template"]["spec"]["containers"][0]["image"] == "a:1"


def test_strategic_merge_null_deletes() -> None:
    merged = strategic_merge({"a": 1, "b": {"c": 2}}, {"b": None})
    assert merged == {"a": 1}


def test_json_patch_operations() -> None:
    patched = apply_json_patch(
        DEPLOYMENT,
        [
            {"op": "test", "path": "/metadata/name", "value": "web"},
            {"op": "add", "path": "/spec/replicas", "value": 3},
            {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "a:9"},
            {"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "--x"},
            {"op": "add", "path": "/spec/template/spec/containers/0/args/0", "value": "--y"},
            {"op": "remove", "path": "/spec/template/spec/containers/1"},
            {"op": "add", "path": "/metadata/annotations", "value": {"a~b/c": "1"}},
            {"op": "replace", "path": "/metadata/annotations/a~0b~1c", "value": "2"},
        ],
    )
    (container,) = patched["spec"]["template"]["spec"]["containers"]
    assert patched["spec"]["replicas"] == 3
    assert container["image"] == "a:9"
    assert container["args"] == ["--y", "--one", "--x"]
    assert patched["metadata"]["annotations"] == {"a~b/c": "2"}


@pytest.mark.parametrize(
    "operation",
    [
        {"op": "test", "path": "/metadata/name", "value": "other"},
        {"op": "replace", "path": "/metadata/missing", "value": 1},
        {"op": "remove", "path": "/metadata/missing"},
        {"op": "add", "path": "/nope/deeper", "value": 1},
        {"op": "move", "from": "/a", "path": "/b"},
        {"op": "add", "path": "metadata", "value": 1},
        {"op": "add", "path": "/spec/template/spec/containers/7", "value": {}},
        {"op": "add", "path": "/metadata/name"},
    ],
)
def test_invalid_json_patches_fail(operation: dict[str, Any]) -> None:
    with pytest.raises(KustomizeError):
        apply_json_patch(DEPLOYMENT, [operation])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=10,
)


@given(st.dictionaries(st.text(min_size=1, max_size=8), json_values, min_size=1), json_values)
def test_add_then_remove_restores_any_document(document: dict[str, Any], value: Any) -> None:
    key = "".join(sorted(document)) + "-new"
    pointer = "/" + key.replace("~", "~0").replace("/", "~1")
    added = apply_json_patch(document, [{"op": "add", "path": pointer, "value": value}])
    assert added[key] == value
    assert apply_json_patch(added, [{"op": "remove", "path": pointer}]) == document


def _write(directory: Path, files: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        text = content if isinstance(content, str) else yaml.safe_dump(content)
        (directory / name).write_text(text, encoding="utf-8")


def test_overlay_patches_a_base_by_identity_and_by_target(tmp_path: Path) -> None:
    _write(
        tmp_path / "base",
        {
            "kustomization.yaml": {"resources": ["deployment.yaml"]},
            "deployment.yaml": DEPLOYMENT,
        },
    )
    _write(
        tmp_path / "overlay",
        {
            "kustomization.yaml": {
                "resources": ["../base"],
                "patches": [
                    {"path": "image.yaml"},
                    {
                        "target": {"kind": "Deployment", "name": "web"},
                        "patch": "- {op: add, path: /spec/replicas, value: 2}",
                    },
                ],
            },
            "image.yaml": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "ns"},
                "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "a:5"}]}}},
            },
        },
    )
    (deployment,) = build_kustomization(tmp_path / "overlay")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "a:5"


@pytest.mark.parametrize(
    ("kustomization", "message"),
    [
        ({"resources": [], "namePrefix": "x-"}, "does not support"),
        ({"resources": ["missing.yaml"]}, "does not exist"),
        ({"resources": ["d.yaml", "d.yaml"]}, "appears twice"),
        ({"resources": ["d.yaml"], "patches": [{"patch": "- {op: remove, path: /a}"}]}, "target"),
        (
            {
                "resources": ["d.yaml"],
                "patches": [{"patch": "{apiVersion: v1, kind: X, metadata: {name: y}}"}],
            },
            "matches no resource",
        ),
        ({"resources": ["d.yaml"], "patches": [{"path": "a", "patch": "b"}]}, "exactly one"),
    ],
)
def test_unsupported_or_broken_kustomizations_fail(
    tmp_path: Path, kustomization: dict[str, Any], message: str
) -> None:
    _write(tmp_path, {"kustomization.yaml": kustomization, "d.yaml": DEPLOYMENT})
    with pytest.raises(KustomizeError, match=message):
        build_kustomization(tmp_path)


def test_missing_kustomization_and_cycles_fail(tmp_path: Path) -> None:
    with pytest.raises(KustomizeError, match="no kustomization"):
        build_kustomization(tmp_path)
    _write(tmp_path / "a", {"kustomization.yaml": {"resources": ["../b"]}})
    _write(tmp_path / "b", {"kustomization.yaml": {"resources": ["../a"]}})
    with pytest.raises(KustomizeError, match="cycle"):
        build_kustomization(tmp_path / "a")
