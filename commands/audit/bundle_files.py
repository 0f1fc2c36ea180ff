"""The files of an evidence bundle, read and written as storage that may be hostile
(docs/security.md, "Evidence bundles"): whoever handed the bundle over, or can write the
directory an export goes to, may have put links, pipes or huge sparse files there.

Reading: a bundle's files are never followed through a link (the evidence must be in the
bundle), must be regular files, and are read only up to what such a file can hold; the
ledger file is checked (type, SQLite header, room for the private copy) before it is copied.
Writing: the export goes into a new or empty directory, each file created new, never
through a link and never over anything already there.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from commands.value_input import UsageProblem
from ledger.errors import IntegrityFailure, LedgerUnavailable
from ledger.home_files import (
    UnsafeFile,
    create_new,
    kind,
    open_regular,
    read_regular,
    write_new,
)

# A PEM Ed25519 public key is 113 bytes; a checkpoint note a few hundred.
PEM_LIMIT = 64 * 1024
NOTE_LIMIT = 64 * 1024
DATABASE = "ledger.sqlite"
WAL = "ledger.sqlite-wal"
_SQLITE_MAGIC = b"SQLite format 3\x00"
# Room kept free beside the private copy (SQLite's -shm, the temporary directory's others).
_SPARE_BYTES = 16 * 1024 * 1024


def read_key_option(path: Path, label: str) -> bytes:
    """A key file named on the command line (a link the caller chose is followed); anything
    but a small regular file is a usage error (exit 2)."""
    try:
        return read_regular(path, PEM_LIMIT, follow=True).data
    except UnsafeFile as exc:
        raise UsageProblem(f"{label} {exc}: not a PEM key") from None
    except OSError as exc:
        raise UsageProblem(f"{label} {path}: cannot be read ({exc.strerror})") from None


def read_bundle_file(bundle: Path, name: str, limit: int) -> bytes | None:
    """A small file of the bundle, None when there is none; a link, a pipe or an oversized
    file there is damaged evidence (IntegrityFailure, exit 6)."""
    try:
        return read_regular(bundle / name, limit).data
    except FileNotFoundError:
        return None
    except UnsafeFile as exc:
        raise IntegrityFailure(f"the bundle's {exc}: not evidence") from None
    except OSError as exc:
        raise IntegrityFailure(
            f"the bundle's {bundle / name} cannot be read: {exc.strerror}"
        ) from None


def copy_database(bundle: Path, scratch: Path) -> None:
    """Copy the bundle's ledger file (and its WAL, if any) into `scratch`, each read through
    the descriptor that was checked: a regular file in the bundle itself, a SQLite file of
    whole pages, with room for the copy. Nothing is copied before all of that holds."""
    sources: list[tuple[str, int]] = []
    try:
        for name in (DATABASE, WAL):
            try:
                fd = open_regular(bundle / name)
            except FileNotFoundError:
                if name == DATABASE:
                    raise UsageProblem(f"--bundle {bundle}: no {DATABASE} there") from None
                continue
            sources.append((name, fd))
        _check_header(bundle / DATABASE, sources[0][1])
        needed = sum(os.fstat(fd).st_size for _, fd in sources)
        room = _room(scratch)
        if needed + _SPARE_BYTES > room:
            raise LedgerUnavailable(
                f"no room to verify a private copy of {bundle / DATABASE} ({needed:,} bytes) in "
                f"{scratch.parent} ({room:,} bytes free); set TMPDIR to a filesystem with room"
            )
        for name, fd in sources:
            target = create_new(scratch / name, 0o600)
            with os.fdopen(fd, "rb", closefd=False) as src, os.fdopen(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    except UnsafeFile as exc:
        raise IntegrityFailure(
            f"the bundle's {exc}: the evidence must be a regular file in the bundle itself"
        ) from None
    except OSError as exc:
        raise LedgerUnavailable(f"cannot copy the bundle's {DATABASE}: {exc.strerror}") from None
    finally:
        for _, fd in sources:
            os.close(fd)


def _check_header(path: Path, fd: int) -> None:
    size = os.fstat(fd).st_size
    header = os.pread(fd, 100, 0)
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        raise IntegrityFailure(f"{path} is not a SQLite ledger (corrupt or foreign file)")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1) or size % page_size:
        raise IntegrityFailure(f"{path} is damaged: not a whole number of valid pages")


def _room(directory: Path) -> int:
    found = os.statvfs(directory)
    blocks = found.f_bfree if os.geteuid() == 0 else found.f_bavail
    return blocks * found.f_frsize


def new_output_directory(out: Path, create: bool = True) -> None:
    """Create `out` for an export, or accept it when it is an empty directory (not a link);
    anything else is a usage error (exit 2): files already there could be links planted by
    whoever can write the directory, or evidence of another export. Without `create`, only
    the check (nothing is made for a command that may yet be refused)."""
    if not create and not os.path.lexists(out):
        return
    try:
        if create:
            out.mkdir(mode=0o700, parents=True)
            return
    except FileExistsError:
        pass
    except OSError as exc:
        raise LedgerUnavailable(f"cannot create {out}: {exc.strerror}") from None
    info = os.lstat(out)
    if not stat.S_ISDIR(info.st_mode):
        raise UsageProblem(f"--out {out} is {kind(info.st_mode)}: give a new directory")
    try:
        with os.scandir(out) as entries:
            anything = next(entries, None)
    except OSError as exc:
        raise LedgerUnavailable(f"cannot read {out}: {exc.strerror}") from None
    if anything is not None:
        raise UsageProblem(
            f"--out {out} is not empty: an export goes into a new or empty directory"
        )


def write_file(out: Path, name: str, data: bytes, mode: int) -> None:
    """`data` as the new file `out/name` (never through a link or over an existing file)."""
    try:
        write_new(out / name, data, mode)
    except FileExistsError:
        raise LedgerUnavailable(
            f"{out / name} appeared while the export was written (someone else writes {out}); "
            "export into a directory only you can write"
        ) from None
    except OSError as exc:
        raise LedgerUnavailable(f"cannot write {out / name}: {exc.strerror}") from None


def place_file(source: Path, out: Path, name: str, mode: int) -> None:
    """Copy `source` (a private staging file) to the new file `out/name`, as `write_file`."""
    try:
        target = create_new(out / name, mode)
    except FileExistsError:
        raise LedgerUnavailable(
            f"{out / name} appeared while the export was written (someone else writes {out}); "
            "export into a directory only you can write"
        ) from None
    except OSError as exc:
        raise LedgerUnavailable(f"cannot write {out / name}: {exc.strerror}") from None
    try:
        with source.open("rb") as src, os.fdopen(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
            dst.flush()
            os.fsync(dst.fileno())
    except OSError as exc:
        raise LedgerUnavailable(f"cannot write {out / name}: {exc.strerror}") from None
