"""The operator's session on this host: a private file naming the session and its secret.

The file proves nothing by itself: role and expiry are always read from the ledger, and the
session secret must match the digest recorded when the session was opened. A file that others
can read is refused, since its secret could have been copied.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from ledger.access.credentials import Credential
from ledger.application import OpenedSession
from ledger.errors import LedgerUnavailable

TOKEN_VARIABLE = "SECRETS_LEDGER_TOKEN"  # noqa: S105  (a variable name)
SESSION_FILE_VARIABLE = "SECRETS_LEDGER_SESSION_FILE"
# A session file holds four short fields (about 300 bytes).
SESSION_FILE_LIMIT = 64 * 1024


def session_path(home: Path) -> Path:
    explicit = os.environ.get(SESSION_FILE_VARIABLE, "").strip()
    return Path(explicit) if explicit else home / "session.json"


def save(path: Path, session: OpenedSession) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(
            {
                "operator": session.operator,
                "session_id": session.session_id,
                "session_secret": session.session_secret,
                "expires_at": session.expires_at.isoformat(),
            },
            f,
        )
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise LedgerUnavailable(f"cannot remove the session file {path}: {exc.strerror}") from None


def credential(home: Path) -> Credential:
    """What this process presents: the token variable first, then the session file."""
    token = os.environ.get(TOKEN_VARIABLE, "").strip()
    if token:
        return Credential(token=token)
    path = session_path(home)
    from ledger.home_files import UnsafeFile, read_regular

    try:
        # Not followed, not waited on, not read beyond a session file's size: the home's
        # writer must not make every command hang or fill memory (docs/security.md).
        read = read_regular(path, SESSION_FILE_LIMIT)
    except FileNotFoundError:
        return Credential()
    except UnsafeFile as exc:
        return Credential(problem=f"session file {exc}, not a session file; log in again")
    except OSError as exc:
        return Credential(problem=f"session file unreadable: {exc.strerror}")
    info = read.info
    if stat.S_IMODE(info.st_mode) & 0o077:
        return Credential(
            problem=f"session file {path} is readable by others "
            f"(mode {stat.S_IMODE(info.st_mode):o}); log in again"
        )
    if info.st_uid != os.getuid():
        return Credential(problem=f"session file {path} belongs to another user")
    try:
        data = json.loads(read.data)
        return Credential(
            operator=str(data["operator"]),
            session_id=str(data["session_id"]),
            session_secret=str(data["session_secret"]),
        )
    except (ValueError, KeyError, TypeError, RecursionError):
        return Credential(problem=f"session file {path} is malformed; log in again")
