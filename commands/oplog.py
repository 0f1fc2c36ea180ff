"""One structured (JSON) log line per command, written when the command ends.

Fields (docs/metrics.md, "Structured logs"): timestamp, level, event ("command"), operation,
operator, address, outcome, code, correlation_id, duration_ms, exit_code, error. Every key is
always present (null when unknown) so log pipelines need no special cases.

What is never logged: command-line arguments other than the command words (`--value` holds
a secret), exception messages (only the class name), values, tokens, fingerprints.

Destination: `--log-file PATH` or `SECRETS_LEDGER_LOG_FILE` (appended, created 0600), default
level info, so every operation is recorded; otherwise stderr, but only when
`SECRETS_LEDGER_LOG_LEVEL` is set: stderr is where a person reads the one-line error, and a JSON
line after it by default would make every failure two lines. `SECRETS_LEDGER_LOG_LEVEL` sets
the level for either destination; an unknown level is warned about once on stderr and means
info.

structlog (with the rich console renderer it imports) costs about 300 ms to import, so it is
imported only once a line has passed the level filter, after the command's output is flushed.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import typer

    from ledger.access.credentials import Credential

LOG_FILE_VARIABLE: Final = "SECRETS_LEDGER_LOG_FILE"
LOG_LEVEL_VARIABLE: Final = "SECRETS_LEDGER_LOG_LEVEL"
LEVELS: Final = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
FILE_DEFAULT_LEVEL: Final = "info"
_OFF: Final = 1000

# exit code -> (outcome, level); anything else is ("error", "error").
OUTCOMES: Final[dict[int, tuple[str, str]]] = {
    0: ("success", "info"),
    2: ("usage", "warning"),
    3: ("not_found", "warning"),
    4: ("denied", "warning"),
    5: ("rejected", "warning"),
    130: ("interrupted", "warning"),
}
FAILURE_CODES: Final = {4: "HBSE-006", 5: "HBSE-007"}
# Codes that name a failure can never be the code of a successful command.
_NOT_SUCCESS_CODES: Final = frozenset({"HBSE-006", "HBSE-007", "HBSE-013"})

_bound: dict[str, str] = {}
_log_file: Path | None = None
_level_warned = False


def bind(**fields: str) -> None:
    """Remember a field for this command's log line (operator, address)."""
    _bound.update(fields)


def bind_credential(cred: Credential) -> None:
    """The identity the caller presented. Proven or not: the outcome says which."""
    from ledger import context
    from ledger.access import tokens

    claimed: str | None = None
    if cred.problem is None:
        if cred.token:
            parsed = tokens.parse(cred.token)
            claimed = parsed[0] if parsed else None  # never the token's secret part
        else:
            claimed = cred.operator
    bind(operator=claimed or context.ANONYMOUS)


def set_log_file(path: Path | None) -> None:
    global _log_file
    _log_file = path


def command_path(app: typer.Typer, args: list[str]) -> str | None:
    """The command words of argv (`auth grant`, `metrics serve`), and nothing else of it."""
    words: list[str] = []
    current: typer.Typer | None = app
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if current is app and arg == "--log-file":
            skip = True
            continue
        if arg.startswith("-") or current is None:
            break
        commands = {
            info.name or (info.callback.__name__.replace("_", "-") if info.callback else ""): None
            for info in current.registered_commands
        }
        groups = {g.name: g.typer_instance for g in current.registered_groups if g.name}
        if arg in groups:
            words.append(arg)
            current = groups[arg]
        elif arg in commands:
            words.append(arg)
            current = None
        else:
            break
    return " ".join(words) or None


def success_code(operation: str | None) -> str | None:
    """The audit code a successful command records, if it records one."""
    if not operation:
        return None
    from projections.audit_codes import EVENT_CODES, REASON_CODES

    by_action: dict[str, str] = {}
    for code, action in (*EVENT_CODES.values(), *REASON_CODES.values()):
        if code not in _NOT_SUCCESS_CODES:
            by_action.setdefault(action, code)
    return by_action.get(operation.split()[-1])


def _destination() -> tuple[Path | None, int]:
    variable = os.environ.get(LOG_FILE_VARIABLE, "").strip()
    explicit = _log_file or (Path(variable) if variable else None)
    wanted = os.environ.get(LOG_LEVEL_VARIABLE, "").strip().lower()
    if explicit is None and not wanted:
        return None, _OFF
    if wanted and wanted not in LEVELS:
        _warn_level_once(wanted)
    return explicit, LEVELS.get(wanted, LEVELS[FILE_DEFAULT_LEVEL])


def _warn_level_once(wanted: str) -> None:
    """An unknown level means the default, said once per process on stderr (never silently)."""
    global _level_warned
    if _level_warned:
        return
    _level_warned = True
    shown = wanted if len(wanted) <= 20 and wanted.isprintable() else wanted[:17] + "..."
    print(
        f"warning: {LOG_LEVEL_VARIABLE}={shown!r} is not a log level "
        f"({', '.join(LEVELS)}); using {FILE_DEFAULT_LEVEL}",
        file=sys.stderr,
    )


def command_finished(
    operation: str | None, exit_code: int, error: str | None, started: float
) -> None:
    from ledger import context

    outcome, level = OUTCOMES.get(exit_code, ("error", "error"))
    code = success_code(operation) if exit_code == 0 else FAILURE_CODES.get(exit_code)
    emit(
        level,
        "command",
        operation=operation,
        operator=_bound.get("operator"),
        address=_bound.get("address"),
        outcome=outcome,
        code=code,
        # Created here when the command never opened the ledger: the line still needs an id.
        correlation_id=context.correlation_id(),
        duration_ms=round((time.monotonic() - started) * 1000, 1),
        exit_code=exit_code,
        error=error,
    )


def emit(level: str, event: str, **fields: Any) -> None:
    """Write one line if `level` passes the threshold. Logging never fails a command."""
    path, threshold = _destination()
    if LEVELS[level] < threshold:
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    try:
        if path is None:
            _write(sys.stderr.buffer, level, threshold, event, fields)
            return
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        # Unbuffered: BytesLogger writes line and newline in one write(2), and O_APPEND keeps
        # lines from concurrent commands whole.
        with os.fdopen(fd, "ab", buffering=0) as handle:
            _write(handle, level, threshold, event, fields)
    except OSError as exc:
        print(f"warning: cannot write the log file {path}: {exc.strerror}", file=sys.stderr)


def _serialize(document: Any, **options: Any) -> bytes:
    return json.dumps(document, **options).encode()


def _write(handle: Any, level: str, threshold: int, event: str, fields: dict[str, Any]) -> None:
    import structlog

    logger = structlog.wrap_logger(
        structlog.BytesLogger(handle),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
            structlog.processors.JSONRenderer(serializer=_serialize, sort_keys=True),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        cache_logger_on_first_use=False,
    )
    getattr(logger, level)(event, **fields)
