"""Values for shell completion, read straight from the views file.

Completion runs on every Tab press, inside the user's shell: it must be quick, write nothing,
open neither the keychain nor the event store, and never fail. So it reads `views.sqlite`
read-only, as it stands (it may trail the log until the next `list` or `dashboard` catches it
up), and answers [] on any problem.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Final, Literal

from ledger.store.database_url import configured_url, views_path

Column = Literal["environment", "service", "name"]

# Whole statements per column: no SQL is ever assembled from input.
_QUERIES: Final[dict[str, str]] = {
    "environment": "SELECT DISTINCT environment FROM secrets_view WHERE current_version > 0",
    "service": "SELECT DISTINCT service FROM secrets_view WHERE current_version > 0 "
    "AND (? IS NULL OR environment = ?)",
    "name": "SELECT DISTINCT name FROM secrets_view WHERE current_version > 0 "
    "AND (? IS NULL OR environment = ?) AND (? IS NULL OR service = ?)",
}


def known_values(
    home: Path,
    column: Column,
    incomplete: str = "",
    *,
    environment: str | None = None,
    service: str | None = None,
    database_url: str | None = None,
) -> list[str]:
    """Known values of `column` starting with `incomplete`, narrowed by what is already typed.

    `database_url` (default: $SECRETS_LEDGER_DATABASE_URL) finds the views cache of a shared
    PostgreSQL ledger, which has its own name in the home."""
    try:
        url = configured_url(database_url)
        path = views_path(Path(home), url).resolve()
        if not path.is_file():
            return []
        db = sqlite3.connect(path.as_uri() + "?mode=ro", uri=True, timeout=0.5)
        try:
            params: tuple[str | None, ...] = ()
            if column == "service":
                params = (environment, environment)
            elif column == "name":
                params = (environment, environment, service, service)
            found = [str(r[0]) for r in db.execute(_QUERIES[column], params)]
        finally:
            db.close()
    except Exception:
        return []
    return sorted(v for v in found if v.startswith(incomplete))
