"""Who is acting, under which command, and what time it is.

Every event is stamped from these context variables when it is created, so no command can
forget to say who did it. The clock is a context variable so domain tests can control time
without patching the library.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

ANONYMOUS = "anonymous"
SYSTEM = "system"

current_operator: ContextVar[str] = ContextVar("current_operator", default=SYSTEM)
current_correlation: ContextVar[str] = ContextVar("current_correlation", default="")
current_clock: ContextVar[Callable[[], datetime] | None] = ContextVar("current_clock", default=None)


def now() -> datetime:
    clock = current_clock.get()
    return clock() if clock is not None else datetime.now(UTC)


def correlation_id() -> str:
    """The current command's correlation id, created on first use."""
    value = current_correlation.get()
    if not value:
        value = uuid.uuid4().hex
        current_correlation.set(value)
    return value


@contextmanager
def acting_as(operator: str) -> Iterator[None]:
    token = current_operator.set(operator)
    try:
        yield
    finally:
        current_operator.reset(token)


@contextmanager
def frozen_clock(clock: Callable[[], datetime]) -> Iterator[None]:
    token = current_clock.set(clock)
    try:
        yield
    finally:
        current_clock.reset(token)
