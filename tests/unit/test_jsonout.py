"""The CLI's JSON writer gives exactly `json.dumps(document, indent=2, sort_keys=True)`."""

from __future__ import annotations

import enum
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from commands.jsonout import dumps

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(),
    st.floats(allow_nan=True, allow_infinity=True),
)
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=6), inner, max_size=4),
    ),
    max_leaves=30,
)


def _same(document: Any) -> None:
    assert dumps(document) == json.dumps(document, indent=2, sort_keys=True)


@settings(max_examples=300)
@given(documents)
def test_any_document_is_written_as_json_dumps_writes_it(document: Any) -> None:
    _same(document)


class Level(enum.IntEnum):
    HIGH = 2


def test_what_it_leaves_to_json_dumps() -> None:
    for document in (
        {"a": 1.5, "b": [1, 2]},
        {1: "int keys", 2: None},
        {"level": Level.HIGH},
        {"nested": [{"e": '\u00e9\n"', "empty": {}, "none": [], "t": True, "f": False}]},
        [],
        {},
        "top-level string",
    ):
        _same(document)
    # Mixed key types cannot be sorted: the same error as json.dumps.
    try:
        dumps({1: "a", "b": 2})
    except TypeError:
        pass
    else:
        raise AssertionError("expected TypeError")
