"""Where a ledger lives and how to open it."""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ledger.errors import IntegrityFailure, LedgerUnavailable, NotInitialized, ValidationFailed

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

    from ledger.application import SecretsLedger

HOME_VARIABLE = "SECRETS_LEDGER_HOME"
DATABASE_FILE = "ledger.sqlite"
LOCK_TIMEOUT_SECONDS = "10"
CHECKPOINT_VARIABLE = "SECRETS_LEDGER_CHECKPOINT_EVERY"
LOCK_TIMEOUT_VARIABLE = "SECRETS_LEDGER_LOCK_TIMEOUT"
# Files a ledger home may hold; each must be private to its owner.
PRIVATE_FILES = (
    DATABASE_FILE,
    f"{DATABASE_FILE}-wal",
    f"{DATABASE_FILE}-shm",
    "views.sqlite",
    "views.sqlite-wal",
    "views.sqlite-shm",
    "vault.enc",
)
VAULT_FILE = "vault.enc"
# Not session.json: one that others could read is refused, not repaired, since its secret
# may already have been copied (ledger/session_file.py).


def default_home() -> Path:
    explicit = os.environ.get(HOME_VARIABLE, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    data = os.environ.get("XDG_DATA_HOME", "").strip() or str(Path.home() / ".local" / "share")
    return Path(data) / "secrets-ledger"


def lock_timeout() -> str:
    """Whole seconds a writer waits for another writer's lock (`SECRETS_LEDGER_LOCK_TIMEOUT`).

    Whole seconds because the library's SQLite factory accepts only an integer.
    """
    text = os.environ.get(LOCK_TIMEOUT_VARIABLE, "").strip() or LOCK_TIMEOUT_SECONDS
    seconds = int(text) if text.isascii() and text.isdigit() else 0
    if not 1 <= seconds <= 3600:
        raise ValidationFailed(
            "lock-timeout",
            f"{LOCK_TIMEOUT_VARIABLE} must be whole seconds from 1 to 3600, got {text[:20]!r}",
        )
    return str(seconds)


def sqlite_env(home: Path) -> dict[str, str]:
    return {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(home / DATABASE_FILE),
        "SQLITE_LOCK_TIMEOUT": lock_timeout(),
        "APPLICATION_RECORDER_TOPIC": "ledger.store_sqlite:ChainedSQLiteApplicationRecorder",
    }


def _check_sqlite_file(path: Path) -> None:
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


def refuse_unsafe(home: Path, also: tuple[str, ...] = ()) -> None:
    """IntegrityFailure when a name the ledger keeps a regular file under (PRIVATE_FILES,
    `also`) holds anything else: a symbolic link, a pipe, a device, a directory. Checked
    before anything opens them, so that the file blamed is the one that is wrong (SQLite
    opening a linked -wal reports the database as damaged) and nothing follows a planted
    link (docs/security.md, "The home directory")."""
    from ledger.home_files import UnsafeFile, require_regular

    for name in (*PRIVATE_FILES, *also):
        if name == VAULT_FILE:
            continue  # the vault refuses it when it reads it, as a vault error (exit 8)
        try:
            require_regular(home / name)
        except UnsafeFile as exc:
            raise IntegrityFailure(
                f"{exc} where the ledger keeps a regular file of its own; it was neither "
                f"followed nor changed: whoever can write {home} may have planted it; remove "
                "it (restore the file from a backup if it was the ledger's)"
            ) from None
        except OSError as exc:
            raise LedgerUnavailable(f"cannot inspect {home / name}: {exc.strerror}") from None


def make_private(home: Path, also: tuple[str, ...] = ()) -> list[str]:
    """Take back group/other access to the ledger home and its files; say what was changed.

    A world-readable ledger leaks metadata (names, operators, timing) and a readable vault
    file or session invites offline attacks, so the modes are repaired rather than trusted.
    Files of another user are refused: chmod would fail and the owner is not us. `also`
    names more files of the home (a PostgreSQL ledger's views cache has its own name).
    Nothing is changed through a symbolic link (`refuse_unsafe`; a home that is a link is
    left to its owner): a link planted in the home must not choose which of the owner's
    files gets its mode changed.
    """
    refuse_unsafe(home, also)
    warnings: list[str] = []
    candidates = [home, *(home / name for name in (*PRIVATE_FILES, *also))]
    for path in candidates:
        try:
            info = path.lstat()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise LedgerUnavailable(f"cannot inspect {path}: {exc.strerror}") from None
        if path == home and stat.S_ISLNK(info.st_mode):
            info = _linked_home(home)
        elif path != home and not stat.S_ISREG(info.st_mode):
            continue  # the vault file (`refuse_unsafe`): never followed or changed here
        mode = stat.S_IMODE(info.st_mode)
        if not mode & 0o077:
            continue
        if info.st_uid != os.getuid():
            raise LedgerUnavailable(f"{path} is accessible by others and belongs to another user")
        private = 0o700 if path == home else 0o600
        _chmod_unfollowed(path, info, mode & 0o700 | private, mode)
        warnings.append(
            f"{path} was accessible by group or others (mode {mode:04o}); "
            f"changed it to {mode & 0o700 | private:04o}"
        )
    return warnings


def _linked_home(home: Path) -> os.stat_result:
    """The directory a home given as a symbolic link names, which must already be private:
    its mode is never changed through the link."""
    try:
        info = home.stat()
    except OSError as exc:
        raise LedgerUnavailable(f"cannot inspect {home}: {exc.strerror}") from None
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise LedgerUnavailable(
            f"{home} is a symbolic link to a directory others can access (mode "
            f"{stat.S_IMODE(info.st_mode):04o}); its mode is not changed through a link: "
            f"run `chmod 700 {home.resolve()}`"
        )
    return info


def _chmod_unfollowed(path: Path, seen: os.stat_result, new: int, mode: int) -> None:
    """chmod the file `seen` (lstat) at `path` through a descriptor opened without following
    a link, after checking it is still that file (Linux has no lchmod)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    if stat.S_ISDIR(seen.st_mode):
        flags |= os.O_DIRECTORY
    try:
        fd = os.open(path, flags)
        try:
            now = os.fstat(fd)
            if (now.st_dev, now.st_ino) != (seen.st_dev, seen.st_ino):
                raise IntegrityFailure(f"{path} was replaced while its mode was being checked")
            os.fchmod(fd, new)
        finally:
            os.close(fd)
    except OSError as exc:
        raise LedgerUnavailable(
            f"{path} is accessible by others (mode {mode:o}) and cannot be made private: "
            f"{exc.strerror}"
        ) from None


def open_ledger(
    home: Path | None = None,
    *,
    create: bool = False,
    backend: KeyringBackend | None = None,
    database_url: str | None = None,
    private: bool = True,
) -> SecretsLedger:
    """Open (or with `create`, make) the ledger in `home`.

    Without `create`, a missing ledger is an error and nothing is written to disk.
    `database_url` (default: $SECRETS_LEDGER_DATABASE_URL) puts the event store elsewhere:
    `postgresql://...` for a shared PostgreSQL store (`home` then holds only this host's
    views cache, session and pending intents), or `sqlite:///dir` for the SQLite ledger there.
    With `private` (the default) loose modes on the home and its files are repaired; a copy
    opened only to be verified (an evidence bundle) passes False and is left exactly as found.
    """
    from eventsourcing.persistence import PersistenceError

    from ledger.application import SecretsLedger
    from ledger.database_url import PostgresLocation, configured_url, parse

    home = home or default_home()
    url = configured_url(database_url)
    if url:
        location = parse(url)
        if isinstance(location, PostgresLocation):
            from ledger.config_postgres import open_postgres_ledger

            shared = open_postgres_ledger(location, home, create=create, backend=backend)
            shared.checkpoint_every = checkpoint_interval()
            return shared
        home = location.home
    db = home / DATABASE_FILE
    if not os.path.lexists(db):
        if not create:
            raise NotInitialized(f"no ledger at {home}; run `secrets init`")
        try:
            home.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Create the file ourselves so that it is private from its first byte.
            os.close(os.open(db, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600))
        except OSError as exc:
            raise LedgerUnavailable(f"cannot create the ledger at {home}: {exc.strerror}") from None
    else:
        refuse_unsafe(home)
        _check_sqlite_file(db)
    repaired = make_private(home) if private else []
    # SQLite's -wal and -shm files inherit the process umask: keep them private too.
    os.umask(0o077)
    try:
        ledger = SecretsLedger(env=sqlite_env(home), home=home, backend=backend)
    except PersistenceError as exc:
        raise storage_failure(exc, home) or LedgerUnavailable(
            f"cannot open the ledger at {home}: {exc}"
        ) from None
    ledger.warnings.extend(repaired)
    ledger.checkpoint_every = checkpoint_interval()
    return ledger


def checkpoint_interval() -> int:
    """Events between automatic signed checkpoints (`SECRETS_LEDGER_CHECKPOINT_EVERY`, 0 = off)."""
    from ledger.checkpoint_names import DEFAULT_INTERVAL

    text = os.environ.get(CHECKPOINT_VARIABLE, "").strip()
    try:
        return max(0, int(text)) if text else DEFAULT_INTERVAL
    except ValueError:
        return DEFAULT_INTERVAL
