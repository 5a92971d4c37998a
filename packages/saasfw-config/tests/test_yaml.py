"""The strict YAML reader: data, line numbers, problems, and a round-trip property."""

from __future__ import annotations

import datetime
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from saasfw.config._yaml import parse_yaml


def test_standard_scalars_are_typed() -> None:
    doc = parse_yaml(
        "a: 1\nb: 1.5\nc: true\nd: null\ne: 2026-11-22\nf: '007'\ng: !!str 12\n", "f.yaml", None
    )
    assert doc.problems == []
    assert doc.data == {
        "a": 1,
        "b": 1.5,
        "c": True,
        "d": None,
        "e": datetime.date(2026, 11, 22),
        "f": "007",
        "g": "12",
    }


def test_lines_are_recorded_for_keys_and_items() -> None:
    doc = parse_yaml("a:\n  b: 1\n  c:\n    - x\n    - y\n", "f.yaml", None)
    assert doc.lines == {
        ("a",): 1,
        ("a", "b"): 2,
        ("a", "c"): 3,
        ("a", "c", 0): 4,
        ("a", "c", 1): 5,
    }


def test_merge_keys_keep_the_explicit_lines() -> None:
    doc = parse_yaml("base: &b {k: 1, j: 2}\nm:\n  <<: *b\n  k: 3\n", "f.yaml", None)
    assert doc.data["m"] == {"k": 3, "j": 2}
    assert doc.lines[("m", "k")] == 4


def test_a_bad_list_item_drops_the_whole_list() -> None:
    doc = parse_yaml("l: [1, !!python/name:os.system '', 3]\n", "f.yaml", None)
    assert "l" not in doc.data
    assert [p.path for p in doc.problems] == ["l[1]"]
    assert ("l",) in doc.reported


def test_tags_on_collections_and_sets_are_refused() -> None:
    doc = parse_yaml(
        "a: !!python/object/apply:os.system [ls]\nb: !!set {x: null}\nc: !custom 1\n",
        "f.yaml",
        None,
    )
    assert [p.kind for p in doc.problems] == ["unsafe_tag"] * 3
    assert doc.data == {}


def test_recursive_alias_is_refused() -> None:
    doc = parse_yaml("a: &a [*a]\n", "f.yaml", None)
    assert "nested deeper" in doc.problems[0].message


def test_non_scalar_keys_are_refused() -> None:
    doc = parse_yaml("? [a, b]\n: 1\nok: 2\n", "f.yaml", None)
    assert doc.data == {"ok": 2}
    assert doc.problems[0].kind == "yaml"


keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    # Control characters and Unicode line separators are left out: PyYAML's own emitter
    # writes U+0085 and friends raw, and every YAML reader then folds them.
    st.text(
        alphabet=st.characters(
            blacklist_characters="$", blacklist_categories=["Cs", "Cc", "Zl", "Zp"]
        ),
        max_size=20,
    ),
)
documents = st.dictionaries(
    keys,
    st.recursive(
        leaves,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4)
        ),
        max_leaves=20,
    ),
    min_size=1,
    max_size=6,
)


def _key_paths(value: Any, path: tuple[str | int, ...] = ()) -> set[tuple[str | int, ...]]:
    found: set[tuple[str | int, ...]] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            found.add((*path, key))
            found |= _key_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.add((*path, index))
            found |= _key_paths(item, (*path, index))
    return found


@settings(max_examples=60, deadline=None)
@given(documents, st.sampled_from([False, True]))
def test_safe_dump_round_trips_with_a_line_for_every_key(data: dict[str, Any], flow: bool) -> None:
    text = yaml.safe_dump(data, default_flow_style=flow, allow_unicode=True)
    doc = parse_yaml(text, "f.yaml", lambda name: None)
    assert doc.problems == []
    assert doc.data == data
    assert _key_paths(data) <= set(doc.lines)
    line_count = text.count("\n") + 1
    assert all(1 <= line <= line_count for line in doc.lines.values())
