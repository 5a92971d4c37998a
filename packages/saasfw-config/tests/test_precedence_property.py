"""Acceptance 1: the precedence order holds for arbitrary keys and any subset of layers."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, create_model

from saasfw.config import ConfigError, resolve_settings
from saasfw.config._frozen import freeze

SERVICE = "orders"
ENV = "staging"
# Lowest to highest; 0 is the model default.
LAYERS = (
    "default",
    "base",
    "service-base",
    "env",
    "service-env",
    "dotenv",
    "environ",
    "secrets-dir",
    "file-pointer",
)

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=6)
# Field names as people write them: letters, digits, single inner underscores. The "s_"/"f_"
# prefixes keep them clear of BaseModel's own attributes ("schema", "copy", ...), and a
# name cannot end in "_" at a section boundary: "SECTION___FIELD" is ambiguous with "__".
identifiers = st.from_regex(r"[a-z][a-z0-9]{0,4}(_[a-z0-9]{1,4}){0,2}", fullmatch=True)
keys = st.lists(
    st.tuples(identifiers.map(lambda n: f"s_{n}"), identifiers.map(lambda n: f"f_{n}")),
    min_size=1,
    max_size=6,
    unique=True,
)
layer_sets = st.sets(st.integers(min_value=1, max_value=len(LAYERS) - 1))


def _model(fields: list[tuple[str, str]]) -> type[BaseModel]:
    sections: dict[str, dict[str, Any]] = {}
    for section, field in fields:
        sections.setdefault(section, {})[field] = (str, "L0")
    root: dict[str, Any] = {}
    for section, section_fields in sections.items():
        model = create_model(f"Section_{section}", **section_fields)
        root[section] = (model, model())
    return create_model("Root", **root)


def _nested_set(tree: dict[str, Any], section: str, field: str, value: Any) -> None:
    tree.setdefault(section, {})[field] = value


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), fields=keys)
def test_highest_layer_that_sets_a_key_wins(data: st.DataObject, fields: list[Any]) -> None:
    plan = {key: data.draw(layer_sets, label=f"layers for {key}") for key in fields}
    model = _model(fields)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = root / "config"
        secrets = root / "secrets"
        pointers = root / "pointers"
        for directory in (config / SERVICE, secrets, pointers):
            directory.mkdir(parents=True)
        yaml_layers: dict[int, dict[str, Any]] = {1: {}, 2: {}, 3: {}, 4: {}}
        dotenv_lines: list[str] = []
        environ: dict[str, str] = {}
        for (section, field), layers in plan.items():
            variable = f"SAASFW_{section.upper()}__{field.upper()}"
            for layer in layers:
                value = f"L{layer}-{section}.{field}"
                if layer in yaml_layers:
                    _nested_set(yaml_layers[layer], section, field, value)
                elif layer == 5:
                    dotenv_lines.append(f"{variable}={value}")
                elif layer == 6:
                    environ[variable] = value
                elif layer == 7:
                    (secrets / variable).write_text(value + "\n")
                else:
                    target = pointers / variable
                    target.write_text(value + "\n")
                    environ[f"{variable}_FILE"] = str(target)
        files = {
            1: config / "base.yaml",
            2: config / SERVICE / "base.yaml",
            3: config / f"{ENV}.yaml",
            4: config / SERVICE / f"{ENV}.yaml",
        }
        for layer, tree in yaml_layers.items():
            if tree:
                files[layer].write_text(yaml.safe_dump(tree))
        (root / ".env").write_text("\n".join(dotenv_lines) + "\n")

        loaded = resolve_settings(
            model,
            service=SERVICE,
            env=ENV,
            config_dir=config,
            env_file=root / ".env",
            secrets_dir=secrets,
            environ=environ,
        )

        for (section, field), layers in plan.items():
            winner = max(layers, default=0)
            value = getattr(getattr(loaded.settings, section), field)
            expected = "L0" if winner == 0 else f"L{winner}-{section}.{field}"
            assert value == expected, (section, field, layers)
            source = loaded.sources[f"{section}.{field}"]
            expected_source = {
                0: "default",
                1: f"{files[1]}:",
                2: f"{files[2]}:",
                3: f"{files[3]}:",
                4: f"{files[4]}:",
                5: f"{root / '.env'}:",
                6: "env SAASFW_",
                7: f"secrets dir {secrets}/",
                8: f"secret file {pointers}/",
            }[winner]
            assert source.startswith(expected_source), (source, LAYERS[winner])


scalars = st.one_of(
    st.integers(min_value=-1000, max_value=1000),
    st.booleans(),
    st.text(alphabet="abcdefghij xyz", max_size=8),
)
trees = st.recursive(
    scalars | st.lists(scalars, max_size=3),
    lambda children: st.dictionaries(names, children, max_size=4),
    max_leaves=12,
)


def _reference_merge(low: Any, high: Any) -> Any:
    if isinstance(low, dict) and isinstance(high, dict):
        merged = dict(low)
        for key, value in high.items():
            merged[key] = _reference_merge(low[key], value) if key in low else value
        return merged
    return high


class TreeSettings(BaseModel):
    tree: dict[str, Any] = {}


@settings(max_examples=60, deadline=None)
@given(layers=st.lists(st.dictionaries(names, trees, max_size=4), min_size=1, max_size=4))
def test_yaml_layers_deep_merge_like_the_reference(layers: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config"
        (config / SERVICE).mkdir(parents=True)
        paths = [
            config / "base.yaml",
            config / SERVICE / "base.yaml",
            config / f"{ENV}.yaml",
            config / SERVICE / f"{ENV}.yaml",
        ]
        expected: Any = {}
        for path, layer in zip(paths, layers, strict=False):
            path.write_text(yaml.safe_dump({"tree": layer}))
            expected = _reference_merge(expected, layer)
        loaded = resolve_settings(
            TreeSettings, service=SERVICE, env=ENV, config_dir=config, env_file=None, environ={}
        )
        assert loaded.settings.tree == freeze(expected)  # lists load as tuples


def _yaml_line(text: str, section: str, field: str) -> int:
    current = None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.startswith(" "):
            current = line.split(":", 1)[0]
        elif current == section and line.strip().startswith(f"{field}:"):
            return number
    raise AssertionError(f"{section}.{field} not in\n{text}")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), fields=keys)
def test_only_the_winning_value_is_validated_and_located(
    data: st.DataObject, fields: list[Any]
) -> None:
    """A bad value is reported at its exact file:line or variable, unless overridden."""
    plan = {key: data.draw(layer_sets, label=f"layers for {key}") for key in fields}
    bad_key = data.draw(st.sampled_from(fields), label="bad key")
    bad_layer = data.draw(st.integers(min_value=1, max_value=8), label="bad layer")
    plan[bad_key] = plan[bad_key] | {bad_layer}
    sections: dict[str, dict[str, Any]] = {}
    for section, field in fields:
        sections.setdefault(section, {})[field] = (int, 0)
    root_fields: dict[str, Any] = {}
    for name, section_fields in sections.items():
        section_model = create_model(f"IntSection_{name}", **section_fields)
        root_fields[name] = (section_model, section_model())
    model = create_model("IntRoot", **root_fields)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = root / "config"
        secrets = root / "secrets"
        for directory in (config / SERVICE, secrets):
            directory.mkdir(parents=True)
        files = {
            1: config / "base.yaml",
            2: config / SERVICE / "base.yaml",
            3: config / f"{ENV}.yaml",
            4: config / SERVICE / f"{ENV}.yaml",
        }
        trees: dict[int, dict[str, Any]] = {1: {}, 2: {}, 3: {}, 4: {}}
        dotenv_lines: list[str] = []
        environ: dict[str, str] = {}
        for (section, field), layers in plan.items():
            variable = f"SAASFW_{section.upper()}__{field.upper()}"
            for layer in layers:
                bad = (section, field) == bad_key and layer == bad_layer
                value = "not-a-number" if bad else str(layer)
                if layer in trees:
                    _nested_set(trees[layer], section, field, value if bad else layer)
                elif layer == 5:
                    dotenv_lines.append(f"{variable}={value}")
                elif layer == 6:
                    environ[variable] = value
                elif layer == 7:
                    (secrets / variable).write_text(value)
                else:
                    (root / variable).write_text(value)
                    environ[f"{variable}_FILE"] = str(root / variable)
        texts = {layer: yaml.safe_dump(tree) for layer, tree in trees.items() if tree}
        for layer, text in texts.items():
            files[layer].write_text(text)
        (root / ".env").write_text("\n".join(dotenv_lines) + "\n")
        kwargs: dict[str, Any] = {
            "service": SERVICE,
            "env": ENV,
            "config_dir": config,
            "env_file": root / ".env",
            "secrets_dir": secrets,
            "environ": environ,
        }
        if max(plan[bad_key]) != bad_layer:
            resolve_settings(model, **kwargs)  # overridden by a valid value: no error
            return
        with pytest.raises(ConfigError) as caught:
            resolve_settings(model, **kwargs)
        section, field = bad_key
        variable = f"SAASFW_{section.upper()}__{field.upper()}"
        if bad_layer == 5:
            line = dotenv_lines.index(f"{variable}=not-a-number") + 1
            expected = f"{root / '.env'}:{line} ({variable})"
        elif bad_layer == 6:
            expected = f"env {variable}"
        elif bad_layer == 7:
            expected = f"secrets dir {secrets / variable}"
        elif bad_layer == 8:
            expected = f"secret file {root / variable} ({variable}_FILE)"
        else:
            line = _yaml_line(texts[bad_layer], section, field)
            expected = f"{files[bad_layer]}:{line}"
        assert [(p.path, p.source) for p in caught.value.problems] == [
            (f"{section}.{field}", expected)
        ]
