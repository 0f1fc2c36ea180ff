"""Exit codes: the one place they are named. Documented in the README and `secrets --help`."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    NOT_FOUND = 3
    PERMISSION_DENIED = 4
    VALIDATION_FAILED = 5
    INTEGRITY_FAILURE = 6
    CONFLICT = 7
    KEYCHAIN_UNAVAILABLE = 8
    INTERRUPTED = 130


HELP_TEXT = (
    "Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 permission denied, "
    "5 validation failed, 6 integrity failure, 7 unresolved write conflict, "
    "8 keychain unavailable."
)


def for_error(error: BaseException) -> ExitCode:
    from ledger import errors

    table: list[tuple[type[BaseException], ExitCode]] = [
        (errors.NotFound, ExitCode.NOT_FOUND),
        (errors.PermissionDenied, ExitCode.PERMISSION_DENIED),
        (errors.ValidationFailed, ExitCode.VALIDATION_FAILED),
        (errors.IntegrityFailure, ExitCode.INTEGRITY_FAILURE),
        (errors.ConflictUnresolved, ExitCode.CONFLICT),
        (errors.KeychainUnavailable, ExitCode.KEYCHAIN_UNAVAILABLE),
    ]
    for kind, code in table:
        if isinstance(error, kind):
            return code
    return ExitCode.ERROR
