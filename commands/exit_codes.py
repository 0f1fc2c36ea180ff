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


# What each code means, for docs/cli.md (commands/clidoc.py renders this table).
MEANING: dict[ExitCode, str] = {
    ExitCode.OK: "ok",
    ExitCode.ERROR: "error (e.g. ledger not initialised, read-only ledger file, disk full, "
    "the event store unreachable)",
    ExitCode.USAGE: "usage: bad or missing options, or a malformed option value (a date, a "
    "time, a code, text that is not UTF-8, a number out of range)",
    ExitCode.NOT_FOUND: "not found: unknown secret or version; deleted, pruned or destroyed "
    "value; no agent for `agent status`",
    ExitCode.PERMISSION_DENIED: "permission denied: no session, expired, revoked, role too "
    "low; recorded as HBSE-006",
    ExitCode.VALIDATION_FAILED: "validation failed: name, value, role, catalogue or values "
    "file rejected; an invalid `-e` environment name on any command",
    ExitCode.INTEGRITY_FAILURE: "integrity failure: corrupt or tampered ledger, keychain and "
    "ledger disagree",
    ExitCode.CONFLICT: "a write conflict that retries could not resolve",
    ExitCode.KEYCHAIN_UNAVAILABLE: "keychain unavailable: missing, locked, refused as "
    "insecure, or another vault than the ledger records",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C) while the command ran",
}

# Rules that hold for every command, for docs/cli.md under the table.
RULES: tuple[str, ...] = (
    "Missing input: input a command needs but was not given at all (no option names a source "
    "and there is no terminal to ask on: a value, a token, a key) is a usage error, exit 2, "
    "before anything is opened or recorded. Input that was given but is refused for what it "
    "is (an empty or whitespace-only value or token, a value breaking a rule, a malformed "
    "file) is a validation failure, exit 5.",
    "A closed output pipe (`secrets rotate-status | head -1`): the command stops writing and "
    "ends as any Unix tool does, killed by SIGPIPE (status 141 in a shell), with nothing on "
    "stderr; never exit 1, which is a finding.",
)

HELP_TEXT = (
    "Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 permission denied, "
    "5 validation failed, 6 integrity failure, 7 unresolved write conflict, "
    "8 keychain unavailable."
)


def for_error(error: BaseException) -> ExitCode:
    from ledger import errors
    from ledger.store.database_url import MalformedDatabaseUrl

    table: list[tuple[type[BaseException], ExitCode]] = [
        (MalformedDatabaseUrl, ExitCode.USAGE),
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
