"""The SQLite ledger file on disk: a full disk told from damage, page and index checks,
index repair."""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ledger.errors import IntegrityFailure, LedgerUnavailable
from ledger.store.config import lock_timeout

if TYPE_CHECKING:
    pass


def check_sqlite_file(path: Path) -> None:
    """Turn a corrupt or unreadable file into one clear error before the library sees it."""
    try:
        with path.open("rb") as f:
            header = f.read(16)
    except OSError as exc:
        raise LedgerUnavailable(f"cannot read the ledger at {path}: {exc.strerror}") from None
    if header and header != b"SQLite format 3\x00":
        raise IntegrityFailure(f"{path} is not a SQLite ledger (corrupt or foreign file)")
    if not os.access(path, os.W_OK):
        raise LedgerUnavailable(f"the ledger at {path} is read-only")
    # The header and the schema only: a full `quick_check` reads every page (seconds on a
    # large ledger, for every command). Damage deeper in the file surfaces when a command
    # reads it (the CLI reports it as damage, exit 6); `audit verify` and `doctor` read
    # every page first (`check_pages`).
    _read_only_query(path, "SELECT count(*) FROM sqlite_master")


# Below this much room (or with no inode left) SQLite cannot grow a WAL index or journal.
_NEARLY_FULL_BYTES = 64 * 1024


def disk_full(directory: Path) -> bool:
    """Whether the filesystem holding `directory` has (almost) no room left for this
    process: blocks root may use count for root, inodes too (a new -shm file needs one)."""
    try:
        found = os.statvfs(directory)
    except OSError:
        return False
    blocks = found.f_bfree if os.geteuid() == 0 else found.f_bavail
    inodes = found.f_ffree if os.geteuid() == 0 else found.f_favail
    return blocks * found.f_frsize < _NEARLY_FULL_BYTES or (found.f_files > 0 and inodes == 0)


def storage_failure(exc: BaseException, directory: Path) -> LedgerUnavailable | None:
    """A full disk or a failing one, told apart from damage: SQLite reports a WAL index it
    cannot grow as "disk I/O error" (SQLITE_IOERR_SHMSIZE) even for a read, and neither says
    anything about the bytes already in the file. None for any other error (`exc` or the
    SQLite error it wraps)."""
    cause = exc if isinstance(exc, sqlite3.Error) else exc.__cause__
    if not isinstance(cause, sqlite3.Error):
        return None
    name = str(getattr(cause, "sqlite_errorname", ""))
    if name == "SQLITE_FULL" or (name.startswith("SQLITE_IOERR") and disk_full(directory)):
        return LedgerUnavailable(
            f"disk full: no room left on the filesystem of {directory} ({cause}); what the "
            "ledger holds is intact: free some space and run the command again"
        )
    if name.startswith("SQLITE_IOERR"):
        return LedgerUnavailable(
            f"the disk holding {directory} failed a read or write ({cause}, {name}); "
            "check the disk and the system log, then run the command again"
        )
    return None


@contextlib.contextmanager
def _damage_reported(path: Path) -> Iterator[None]:
    """SQLite's errors from reading `path` as IntegrityFailure, including text that is no
    longer UTF-8 (SQLite's own message can quote a damaged name, and then cannot be decoded
    either); a full or failing disk is LedgerUnavailable (`storage_failure`)."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        failed = storage_failure(exc, path.parent)
        if failed is not None:
            raise failed from None
        raise IntegrityFailure(f"{path} is damaged: {exc}") from None
    except UnicodeDecodeError:
        raise IntegrityFailure(f"{path} is damaged: stored text is not valid UTF-8") from None


def _read_only_query(path: Path, sql: str) -> list[str]:
    """The first column of `sql`'s rows over a read-only connection; damage is
    IntegrityFailure (`_damage_reported`)."""
    with _damage_reported(path):
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return [str(r[0]) for r in con.execute(sql).fetchall()]
        finally:
            con.close()


def check_pages(path: Path, deep: bool = False) -> None:
    """Read every page of a SQLite ledger file (PRAGMA quick_check); damage is IntegrityFailure.

    `deep` also checks every index entry against its row (PRAGMA integrity_check, about 7x
    the time): the topic index answers "every secret" (rotate --all, compliance, doctor), and
    an entry that names the wrong row hides a secret from them while every page still reads."""
    problems = _read_only_query(path, "PRAGMA integrity_check" if deep else "PRAGMA quick_check")
    if problems != ["ok"]:
        hint = ""
        if damaged_indexes(problems):
            # An edited row reads the same way: only the chain can tell which it is.
            hint = (
                " (an index, or an edited row: if `secrets audit verify` passes, "
                "`secrets doctor --repair` rebuilds the index)"
            )
        raise IntegrityFailure(f"{path} is damaged: {problems[0][:200]}{hint}")


# How PRAGMA integrity_check names a damaged index: "row 6 missing from index t_a", "wrong
# # of entries in index t_a", "non-unique entry in index t_a".
_INDEX_PROBLEM = re.compile(
    r"(?:row \d+ missing from|wrong # of entries in|non-unique entry in) index (\w+)"
)


def damaged_indexes(problems: list[str]) -> list[str]:
    """The indexes `problems` (integrity_check's lines) name, when indexes are all they name;
    [] when anything else is damaged too. Such a line can also mean an edited row (the index
    keeps the old value), so `repair_indexes` checks the rows before it rebuilds."""
    names: list[str] = []
    for line in problems:
        found = _INDEX_PROBLEM.fullmatch(line)
        if found is None:
            return []
        if found[1] not in names:
            names.append(found[1])
    return names


# integrity_check stops at this many lines: a repair that saw them all knows everything that
# is damaged (100, SQLite's default, can hide row damage behind many index lines).
CHECK_LINES = 10_000


def repair_indexes(path: Path, rows_fault: Callable[[], str | None]) -> list[str]:
    """Rebuild the damaged indexes of a SQLite ledger from its rows (REINDEX), when indexes
    are all that integrity_check finds damaged and `rows_fault()` (the hash chain walked in
    position order, which uses no index) finds the rows as written; returns the names rebuilt
    ([] when nothing is damaged). An edited row looks to integrity_check like a damaged index
    entry: rebuilding from it would erase the last trace of the original, so any other damage
    or a chain fault is IntegrityFailure and nothing is written. All of it happens under the
    write lock, so no writer changes the file between the check and the rebuild; a healthy
    file is checked without it (writers would wait seconds on a large ledger)."""
    if _read_only_query(path, "PRAGMA integrity_check") == ["ok"]:
        return []
    try:
        con = sqlite3.connect(path, timeout=int(lock_timeout()), isolation_level=None)
    except sqlite3.Error as exc:
        raise LedgerUnavailable(f"cannot open the ledger at {path}: {exc}") from None
    try:
        with _damage_reported(path):
            try:
                con.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise LedgerUnavailable(
                    f"the ledger at {path} is locked by another writer ({exc}); nothing was "
                    "repaired, try again"
                ) from None
            problems = [str(r[0]) for r in con.execute(f"PRAGMA integrity_check({CHECK_LINES})")]
            if problems == ["ok"]:
                return []
            if len(problems) >= CHECK_LINES:
                raise IntegrityFailure(
                    f"{path}: refusing to rebuild indexes: the check reports {CHECK_LINES:,} "
                    "problems or more, too many to be sure that indexes are all that is "
                    f"damaged (the first: {problems[0][:200]}); restore the file from a backup"
                )
            names = damaged_indexes(problems)
            if not names:
                raise IntegrityFailure(f"{path} is damaged: {problems[0][:200]}")
            fault = rows_fault()
            if fault is not None:
                raise IntegrityFailure(
                    f"{path}: refusing to rebuild index {', '.join(names)}: the rows differ from "
                    f"the hash chain ({fault}); run `secrets audit verify`"
                )
            for name in names:
                con.execute(f'REINDEX "{name}"')
            after = [str(r[0]) for r in con.execute(f"PRAGMA integrity_check({CHECK_LINES})")]
            if after != ["ok"]:
                raise IntegrityFailure(f"{path} is damaged: {after[0][:200]}")
            con.execute("COMMIT")
            return names
    finally:
        with contextlib.suppress(sqlite3.Error):
            if con.in_transaction:
                con.execute("ROLLBACK")
        con.close()
