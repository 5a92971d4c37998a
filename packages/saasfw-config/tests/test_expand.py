"""``${VAR}`` expansion: the grammar, POSIX empty-value semantics and the escape."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from saasfw.config._expand import ExpansionProblem, expand

ENV = {"HOST": "db", "EMPTY": "", "PORT": "5432"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("${HOST}", "db"),
        ("postgresql://${HOST}:${PORT}/x", "postgresql://db:5432/x"),
        ("${EMPTY}", ""),
        ("${MISSING:-fallback}", "fallback"),
        ("${EMPTY:-fallback}", "fallback"),
        ("${HOST:-fallback}", "db"),
        ("${MISSING:-}", ""),
        ("${MISSING:-a:b-c}", "a:b-c"),
        ("${HOST:?must be set}", "db"),
        ("$${HOST}", "${HOST}"),
        ("cost: $5 and $HOST", "cost: $5 and $HOST"),
        ("$$${HOST}", "$${HOST}"),  # leftmost match: "$" then the escape "$${"
    ],
)
def test_expansion(text: str, expected: str) -> None:
    assert expand(text, ENV.get) == expected


@pytest.mark.parametrize(
    ("text", "kind", "fragment"),
    [
        ("${MISSING}", "unset_variable", "'MISSING' is not set and has no default"),
        ("${MISSING:?ask ops for the DSN}", "unset_variable", "ask ops for the DSN"),
        ("${EMPTY:?}", "unset_variable", "'EMPTY' is not set or empty: required"),
        ("${HOST", "bad_expression", "unterminated"),
        ("${1BAD}", "bad_expression", "malformed"),
        ("${}", "bad_expression", "malformed"),
        ("${HOST-x}", "bad_expression", "malformed"),
    ],
)
def test_expansion_errors(text: str, kind: str, fragment: str) -> None:
    with pytest.raises(ExpansionProblem) as caught:
        expand(text, ENV.get)
    assert caught.value.kind == kind
    assert fragment in caught.value.message


literal = st.text(alphabet=st.characters(blacklist_characters="$"), max_size=20)


@given(literal)
def test_text_without_dollar_is_unchanged(text: str) -> None:
    assert expand(text, ENV.get) == text


@given(st.lists(st.one_of(literal, st.sampled_from(["$${", "${HOST}", "${MISSING:-d}"]))))
def test_concatenation_expands_piecewise(parts: list[str]) -> None:
    expected = "".join(
        {"$${": "${", "${HOST}": "db", "${MISSING:-d}": "d"}.get(part, part) for part in parts
    )
    assert expand("".join(parts), ENV.get) == expected


@given(st.text(alphabet="abc${}:-?_XYZ", max_size=30))
def test_never_raises_anything_but_expansion_problems(text: str) -> None:
    with contextlib.suppress(ExpansionProblem):
        expand(text, ENV.get)
