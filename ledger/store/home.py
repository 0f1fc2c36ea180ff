"""The ledger home's own files: refused when they are not regular files, made private
without following a link."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from ledger.errors import IntegrityFailure, LedgerUnavailable
from ledger.store.config import PRIVATE_FILES, VAULT_FILE

if TYPE_CHECKING:
    pass


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
