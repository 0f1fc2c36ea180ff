"""Timestamps as the operating guide shows them: ISO 8601, milliseconds, UTC, `Z`."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(ts: datetime) -> str:
    # isoformat truncates to milliseconds like `microsecond // 1000`, and is faster than
    # strftime (this runs once per event in every catch-up, rebuild and replay).
    return ts.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def parse_iso(text: str) -> datetime:
    """Parse what `iso` writes (and any ISO 8601 with an offset); naive input means UTC."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


_AGO_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """An instant given as ISO 8601 (a bare date means its midnight UTC), as a span ago
    (`30m`, `24h`, `7d`, `2w`) or as `now`. ValueError with a readable message otherwise."""
    import re
    from datetime import timedelta

    cleaned = text.strip()
    if cleaned.lower() == "now":
        return now if now is not None else datetime.now(UTC)
    match = re.fullmatch(r"(\d{1,7})([smhdw])", cleaned)
    try:
        if match:
            base = now if now is not None else datetime.now(UTC)
            return base - timedelta(seconds=int(match.group(1)) * _AGO_UNITS[match.group(2)])
        found = parse_iso(cleaned)
        found.astimezone(UTC)  # an instant near year 1 or 9999 may not exist in UTC
        return found
    except OverflowError:
        raise ValueError(f"{text[:40]!r} is too far in the past or future") from None
    except ValueError:
        raise ValueError(
            f"{text[:40]!r} is not a time: use ISO 8601 (2026-01-31T12:00:00Z), 30m, 24h, 7d or now"
        ) from None
