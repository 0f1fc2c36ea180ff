"""Opening the files of a ledger home (and of an evidence bundle) that someone else may have
planted: docs/security.md, "The home directory".

Whoever can write the home can put a symbolic link, a named pipe or a huge sparse file where
the ledger expects one of its small regular files. Followed, a link lets that writer choose
which of the owner's files the owner's next command reads or changes the mode of; a pipe
blocks a read forever; /dev/zero or a sparse file fills memory. So a home file is opened
without following a link in its last component and without blocking (O_NOFOLLOW |
O_NONBLOCK), checked on the open descriptor (a regular file, within a size cap) and only
then read: the file checked is the file read.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import NamedTuple

_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC


class UnsafeFile(Exception):
    """A file that is not what the ledger keeps there: a link, a pipe, a device, a
    directory, or larger than such a file can be. Callers turn it into their own error (the
    exit code depends on whose file it is)."""

    def __init__(self, path: Path, found: str) -> None:
        super().__init__(f"{path} is {found}")
        self.path = path
        self.found = found


class ReadFile(NamedTuple):
    data: bytes
    info: os.stat_result  # of the descriptor the data came from


def kind(mode: int) -> str:
    """What a file of this mode is, for an error message."""
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def open_regular(path: Path, flags: int = _READ_FLAGS, follow: bool = False) -> int:
    """A descriptor of `path`, a regular file (never a link in its last component unless
    `follow`); UnsafeFile otherwise. OSError (FileNotFoundError included) passes through."""
    try:
        fd = os.open(path, flags | (0 if follow else os.O_NOFOLLOW))
    except OSError as exc:
        # O_NOFOLLOW on a link: ELOOP (Linux, BSD) or EMLINK (FreeBSD before 11).
        if not follow and exc.errno in (errno.ELOOP, errno.EMLINK):
            raise UnsafeFile(path, "a symbolic link") from None
        raise
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        os.close(fd)
        raise
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise UnsafeFile(path, kind(mode))
    return fd


def read_regular(path: Path, limit: int, follow: bool = False) -> ReadFile:
    """The bytes of `path`, a regular file of at most `limit` bytes; UnsafeFile for anything
    else (nothing beyond `limit` + 1 bytes is read, whatever the file claims)."""
    fd = open_regular(path, follow=follow)
    try:
        info = os.fstat(fd)
        if info.st_size > limit:
            raise UnsafeFile(path, f"{info.st_size:,} bytes, more than the {limit:,} it may hold")
        chunks: list[bytes] = []
        left = limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:
            # It grew while being read.
            raise UnsafeFile(path, f"more than the {limit:,} bytes it may hold")
        return ReadFile(data, info)
    finally:
        os.close(fd)


def entry(path: Path) -> os.stat_result | None:
    """The file at `path` itself (lstat), or None when there is none."""
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def require_regular(path: Path) -> os.stat_result | None:
    """`entry`, refusing anything but a regular file (UnsafeFile)."""
    info = entry(path)
    if info is not None and not stat.S_ISREG(info.st_mode):
        raise UnsafeFile(path, kind(info.st_mode))
    return info


def create_new(path: Path, mode: int) -> int:
    """A descriptor of a new file at `path`, opened for writing with exactly `mode` (the
    umask aside): never through a link, never over an existing file (O_CREAT | O_EXCL |
    O_NOFOLLOW); FileExistsError when anything is there, a dangling link included."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
    except OSError:
        os.close(fd)
        raise
    return fd


def write_new(path: Path, data: bytes, mode: int) -> None:
    """`data` as the new file `path` (`create_new`), on disk before this returns."""
    fd = create_new(path, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
