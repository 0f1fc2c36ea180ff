"""What a stored event's state must look like to become its class: exactly the class's fields,
each of its declared type.

The library's mapper sets an event's `__dict__` to the decoded state as it is: an extra key
(`apply`, `mutate`) shadows a method, a missing one or a list where a name belongs breaks the
first code that reads it, far from the row that caused it. Checked once here, on decoding,
such a row is damage (exit 6) named at its position. The check is per field's exact type
(bool is not an int; text must be encodable: no lone surrogates), cheap enough for the views'
rebuild, which applies it to every event it takes by its shortcut (projections/event_reader.py).
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
import types
import typing
from datetime import UTC, datetime
from typing import Any, NamedTuple

# (field, the exact types its value may have, the exact types of its items (list) or values
# (dict), or None for no check)
FieldCheck = tuple[str, frozenset[type], frozenset[type] | None]

_NONE = type(None)
_ABSENT = object()


def _exact(hint: Any) -> frozenset[type] | None:
    """The exact types a value of `hint` may have; None where it is not checked."""
    if isinstance(hint, typing.TypeVar) or hint is Any:
        return None
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        found: set[type] = set()
        for arg in typing.get_args(hint):
            part = _exact(arg)
            if part is None:
                return None
            found |= part
        return frozenset(found)
    if hint is None or hint is _NONE:
        return frozenset({_NONE})
    if origin is not None:
        return frozenset({origin}) if isinstance(origin, type) else None
    return frozenset({hint}) if isinstance(hint, type) else None


def _items(hint: Any) -> frozenset[type] | None:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is list and len(args) == 1:
        return _exact(args[0])
    if origin is dict and len(args) == 2 and args[0] is str:
        return _exact(args[1])
    return None


class Shape(NamedTuple):
    required: frozenset[str]  # every stored state of the class has these
    allowed: frozenset[str]  # and may have these too (fields with a plain default, added later)
    checks: tuple[FieldCheck, ...]


_shapes: dict[type[Any], Shape] = {}


def shape_of(cls: type[Any]) -> Shape:
    """The keys a stored state of `cls` has and the checks of their values."""
    found = _shapes.get(cls)
    if found is None:
        found = _shapes[cls] = _make_shape(cls)
    return found


def _make_shape(cls: type[Any]) -> Shape:
    hints = typing.get_type_hints(cls)
    fields = [
        f for f in dataclasses.fields(cls) if f.name not in ("originator_id", "originator_version")
    ]
    # A plain default is a class attribute, which an older state without the key falls back
    # on; a default factory is not (that key must be stored). A created event passes its
    # fields to the aggregate's `__init__`, whose own defaults stand in for absent ones.
    optional = {f.name for f in fields if f.default is not dataclasses.MISSING}
    optional |= _init_defaults(cls)
    checks = []
    for f in sorted(fields, key=lambda f: f.name):
        allowed = _exact(hints[f.name])
        if allowed is not None:
            checks.append((f.name, allowed, _items(hints[f.name])))
    names = frozenset(f.name for f in fields)
    return Shape(names - optional, names, tuple(checks))


def _init_defaults(cls: type[Any]) -> set[str]:
    """The parameters with a default of the `__init__` of the aggregate that records `cls`
    as its created event (a class that encloses it); none for any other event."""
    if "originator_topic" not in {f.name for f in dataclasses.fields(cls)}:
        return set()
    owner: Any = sys.modules.get(cls.__module__)
    for part in cls.__qualname__.split(".")[:-1]:
        owner = getattr(owner, part, None)
    if not isinstance(owner, type):
        return set()
    init: Any = owner.__init__  # type: ignore[misc]  # the class's own, as the library calls it
    parameters = inspect.signature(init).parameters.values()
    return {p.name for p in parameters if p.default is not inspect.Parameter.empty}


def _text_ok(value: str) -> bool:
    if value.isascii():
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def conforms(state: dict[str, Any], shape: Shape) -> str:
    """ "" when `state` fits, else what does not (a field name, never a value)."""
    keys = state.keys()
    if keys != shape.required and not (shape.required <= keys <= shape.allowed):
        return "its fields are not its class's"
    for name, allowed, items in shape.checks:
        value = state.get(name, _ABSENT)
        if value is _ABSENT:
            continue  # an optional field an older state does not have
        kind = type(value)
        if kind not in allowed and not (datetime in allowed and isinstance(value, datetime)):
            return f"field {name!r} has the wrong type"
        if kind is str and not _text_ok(value):
            return f"field {name!r} is not text"
        if items is not None:
            inner = value.values() if kind is dict else value
            for item in inner:
                if type(item) not in items or (type(item) is str and not _text_ok(item)):
                    return f"field {name!r} holds an item of the wrong type"
            if kind is dict and not all(type(k) is str and _text_ok(k) for k in value):
                return f"field {name!r} has a key of the wrong type"
    stamp = state.get("timestamp")
    if isinstance(stamp, datetime):
        if stamp.tzinfo is None:
            return "its timestamp has no time zone"
        try:
            # Every reader puts the time in UTC: an offset that moves it past year 1 or 9999
            # fits the type but raises OverflowError there, so it is damage here.
            stamp.astimezone(UTC)
        except OverflowError:
            return "its timestamp is beyond the range of UTC"
    return ""
