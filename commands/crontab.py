"""The user's crontab, edited as one marked block per ledger.

`SECRETS_LEDGER_CRONTAB` names a file to use instead of the real crontab (tests, or hosts where
another tool deploys cron files). The block is found by its markers, which name the ledger's
home, so several ledgers can each have a schedule and everything outside the block is kept.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from ledger.errors import LedgerError, ValidationFailed

CRONTAB_VARIABLE = "SECRETS_LEDGER_CRONTAB"
AUTOMATION_VARIABLE = "SECRETS_LEDGER_AUTOMATION"
# Carried into the job: where the ledger is and how to open its vault. Never a passphrase.
CARRIED = (
    "SECRETS_LEDGER_VAULT",
    "SECRETS_LEDGER_PASSPHRASE_FILE",
    "SECRETS_LEDGER_CATALOGUE",
    "PYTHON_KEYRING_BACKEND",
    "DBUS_SESSION_BUS_ADDRESS",
    "XDG_RUNTIME_DIR",
)


class CrontabUnavailable(LedgerError):
    """The crontab could not be read or written."""


def marker(home: Path) -> str:
    return f"secrets-ledger rotation {home}"


def _begin(mark: str) -> str:
    return f"# >>> {mark} >>>"


def _end(mark: str) -> str:
    return f"# <<< {mark} <<<"


def parse_at(text: str) -> tuple[int, int]:
    found = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", text.strip())
    if found is None:
        raise ValidationFailed("schedule-time", f"--at {text[:20]!r}: use HH:MM, 00:00 to 23:59")
    return int(found.group(1)), int(found.group(2))


def job_environment(home: Path, bot: str) -> dict[str, str]:
    """What the scheduled job needs to find the ledger and act as `bot` (cron and systemd)."""
    env = {"SECRETS_LEDGER_HOME": str(home), AUTOMATION_VARIABLE: bot}
    for name in CARRIED:
        if os.environ.get(name):
            env[name] = os.environ[name]
    return env


def code_root() -> Path:
    """Where `python -m commands` finds this package: the job's working directory."""
    return Path(__file__).resolve().parent.parent


def job_line(home: Path, at: str, bot: str) -> str:
    hour, minute = parse_at(at)
    env = job_environment(home, bot)
    root = code_root()
    words = [f"{k}={shlex.quote(v)}" for k, v in env.items()]
    command = (
        # umask: the log names secrets and operators; keep it as private as the ledger.
        f"umask 077 && cd {shlex.quote(str(root))} && {' '.join(words)} "
        f"{shlex.quote(sys.executable)} -m commands rotate --scheduled "
        f">> {shlex.quote(str(home / 'rotation.log'))} 2>&1"
    )
    # cron turns an unescaped % into a newline.
    return f"{minute} {hour} * * * " + command.replace("%", "\\%")


def find_block(text: str, mark: str) -> list[str] | None:
    lines = text.splitlines()
    try:
        start = lines.index(_begin(mark))
        stop = lines.index(_end(mark), start)
    except ValueError:
        return None
    return lines[start + 1 : stop]


def with_block(text: str, mark: str, body: list[str]) -> str:
    kept = _without(text, mark)
    block = [_begin(mark), *body, _end(mark)]
    if kept and not kept.endswith("\n"):
        kept += "\n"
    return kept + "\n".join(block) + "\n"


def _without(text: str, mark: str) -> str:
    lines = text.splitlines()
    out: list[str] = []
    inside = False
    for line in lines:
        if line == _begin(mark):
            inside = True
            continue
        if inside and line == _end(mark):
            inside = False
            continue
        if not inside:
            out.append(line)
    return "\n".join(out) + ("\n" if out else "")


def without_block(text: str, mark: str) -> tuple[str, bool]:
    return _without(text, mark), find_block(text, mark) is not None


def read() -> str:
    path = os.environ.get(CRONTAB_VARIABLE, "").strip()
    if path:
        try:
            return Path(path).read_text()
        except FileNotFoundError:
            return ""
        except OSError as exc:
            raise CrontabUnavailable(f"cannot read {path}: {exc.strerror}") from None
    try:
        done = subprocess.run(["crontab", "-l"], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise CrontabUnavailable(
            "no `crontab` command on this host; install cron, or set "
            f"{CRONTAB_VARIABLE} to a file your scheduler reads"
        ) from None
    if done.returncode != 0:
        if "no crontab" in done.stderr.lower():
            return ""
        raise CrontabUnavailable(f"crontab -l failed: {done.stderr.strip()[:200]}")
    return done.stdout


def write(text: str) -> None:
    path = os.environ.get(CRONTAB_VARIABLE, "").strip()
    if path:
        target = Path(path)
        tmp = target.with_name(target.name + ".tmp")
        try:
            tmp.write_text(text)
            os.replace(tmp, target)
        except OSError as exc:
            raise CrontabUnavailable(f"cannot write {path}: {exc.strerror}") from None
        return
    try:
        done = subprocess.run(
            ["crontab", "-"], input=text, capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise CrontabUnavailable("no `crontab` command on this host") from None
    if done.returncode != 0:
        raise CrontabUnavailable(f"crontab - failed: {done.stderr.strip()[:200]}")
