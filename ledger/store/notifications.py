"""Reading the log in order, a page at a time, for events of chosen classes.

The store filters by topic, so a reader of one kind of event touches only those rows. The
originator id of a stored row is data: one that is not a UUID is damage (IntegrityFailure),
never a ValueError that would surface as an internal error.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Notification
from eventsourcing.utils import get_topic

from ledger.codec.topics import EVENT_OWNERS
from ledger.errors import IntegrityFailure

PAGE_SIZE = 1000


def topic_of(aggregate: type[Any], event_name: str) -> str:
    """The topic under which the store records `aggregate`'s events named `event_name`.

    The aggregates declare most events with `@event("Name")`, which a type checker cannot see
    as class attributes; the allow-list makes a misspelt or renamed event fail here, at once."""
    topic = f"{get_topic(aggregate)}.{event_name}"
    if topic not in EVENT_OWNERS:
        raise ValueError(f"{topic} is not a recorded event (ledger/codec/topics.py)")
    return topic


def pages(
    recorder: Any,
    *,
    topics: Sequence[str] = (),
    start: int | None = None,
    stop: int | None = None,
    page_size: int = PAGE_SIZE,
) -> Iterator[list[Notification]]:
    """The log after position `start` up to and including `stop`, oldest first, a page at a
    time; only events of `topics` when given (filtered in the store)."""
    while True:
        page = recorder.select_notifications(
            start=start,
            limit=page_size,
            stop=stop,
            topics=list(topics),
            inclusive_of_start=False,
        )
        if not page:
            return
        yield page
        start = page[-1].id


def notifications(
    recorder: Any,
    aggregate: type[Any],
    *event_names: str,
    stop: int | None = None,
    page_size: int = PAGE_SIZE,
) -> Iterator[Notification]:
    """Every recorded event of `aggregate` named in `event_names`, oldest first, up to and
    including position `stop` when given."""
    topics = [topic_of(aggregate, name) for name in event_names]
    for page in pages(recorder, topics=topics, stop=stop, page_size=page_size):
        yield from page


def originator_of(notification: Notification) -> UUID:
    """The aggregate id a stored row names; IntegrityFailure if it is not an id."""
    try:
        return UUID(str(notification.originator_id))
    except ValueError:
        raise IntegrityFailure(
            f"the recorded event at position {notification.id} names no valid aggregate id;"
            " run `secrets audit verify`"
        ) from None
