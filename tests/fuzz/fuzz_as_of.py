"""Fuzz the time options: `parse_as_of` (rotate-status --as-of) and `parse_when` (audit
--at/--since/--until, report compliance --as-of) return an aware instant that exists in UTC,
or raise only their documented error (ValidationFailed(as-of), ValueError)."""

from __future__ import annotations

import atheris
from _common import main

with atheris.instrument_imports():
    from tests.hostile import check_time_text


def test_one_input(data: bytes) -> None:
    check_time_text(data.decode("utf-8", "replace"))


if __name__ == "__main__":
    main(test_one_input)
