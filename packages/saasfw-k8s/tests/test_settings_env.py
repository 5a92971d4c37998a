"""settings_to_env: nested settings to ConfigMap variables, never a secret."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from saasfw.k8s import RenderError, settings_to_env

_safe_key = st.from_regex(r"\A[a-z][a-z0-9]{0,7}\Z").filter(
    lambda k: not any(w in k for w in ("secret", "token", "passw", "apikey", "credential"))
)
_scalar = (
    st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.text(st.characters(codec="ascii", exclude_characters="*:@"), max_size=10)
)
_tree = st.recursive(
    _scalar,
    lambda inner: st.dictionaries(_safe_key, inner, min_size=1, max_size=3),
    max_leaves=12,
)


def _leaves(tree: dict[str, Any], path: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    found: dict[tuple[str, ...], Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            found.update(_leaves(value, (*path, key)))
        else:
            found[(*path, key)] = value
    return found


@given(st.dictionaries(_safe_key, _tree, max_size=4))
def test_every_leaf_becomes_exactly_one_variable(settings: dict[str, Any]) -> None:
    env = settings_to_env(settings)
    leaves = _leaves(settings)
    assert len(env) == len(leaves)
    for path, value in leaves.items():
        name = "SAASFW_" + "__".join(p.upper() for p in path)
        expected = ("true" if value else "false") if isinstance(value, bool) else str(value)
        assert env[name] == expected


def test_lists_none_and_literal_names() -> None:
    env = settings_to_env(
        {"observability": {"exporters": ["otlp", "console"], "sample": None}, "SAASFW_X__Y": 1}
    )
    assert env == {
        "SAASFW_OBSERVABILITY__EXPORTERS": json.dumps(["otlp", "console"]).replace(" ", ""),
        "SAASFW_X__Y": "1",
    }


@pytest.mark.parametrize(
    "settings",
    [
        {"db": {"password": "x"}},
        {"jwt": {"private_key": "x"}},
        {"api_token": "x"},
        {"security": {"secret_key": "x"}},
        {"SAASFW_DB__PASSWORD": "x"},
        {"db": {"url": "**********"}},
        {"redis": {"url": "redis://:hunter2@cache:6379/0"}},
        {"bad key": "x"},
        {"db": {"options": object()}},
    ],
)
def test_secrets_and_invalid_entries_are_refused(settings: dict[str, Any]) -> None:
    with pytest.raises(RenderError) as raised:
        settings_to_env(settings)
    assert "hunter2" not in str(raised.value)
