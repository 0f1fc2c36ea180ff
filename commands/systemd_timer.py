"""The rotation schedule as a systemd user timer, for hosts where systemd runs for the user.

Two unit files under ``$XDG_CONFIG_HOME/systemd/user`` (default ``~/.config/systemd/user``),
named after the ledger's home so several ledgers can each have one:

* ``secrets-ledger-rotation-<id>.service``: a oneshot running the same command as the crontab
  line (`commands.crontab.job_line`): the same working directory, umask 077, environment and
  log file, ``python -m commands rotate --scheduled``;
* ``secrets-ledger-rotation-<id>.timer``: ``OnCalendar`` daily at ``--at HH:MM`` (the host's
  time zone), ``Persistent=true`` so a run missed while the machine was off happens at the
  next boot.

`SECRETS_LEDGER_SYSTEMCTL` names the program to call instead of ``systemctl`` (tests use a
fake that records its calls, as `SECRETS_LEDGER_CRONTAB` stands in for the crontab).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import sys
from pathlib import Path

from commands import crontab
from ledger.errors import LedgerError

SYSTEMCTL_VARIABLE = "SECRETS_LEDGER_SYSTEMCTL"


class SystemdUnavailable(LedgerError):
    """systemctl --user could not be run, or refused."""


def unit_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME", "").strip()
    root = Path(base) if base else Path.home() / ".config"
    return root / "systemd" / "user"


def unit_name(home: Path) -> str:
    """``secrets-ledger-rotation-<12 hex of the home's path>`` (without suffix)."""
    digest = hashlib.sha256(str(home).encode()).hexdigest()[:12]
    return f"secrets-ledger-rotation-{digest}"


def unit_paths(home: Path) -> tuple[Path, Path]:
    name = unit_name(home)
    return unit_dir() / f"{name}.service", unit_dir() / f"{name}.timer"


def _specifiers(text: str) -> str:
    # systemd expands %-specifiers in most settings: a literal % is written %%.
    return text.replace("%", "%%")


def _quoted(word: str) -> str:
    """One word for ExecStart= or Environment=: double-quoted, with systemd's escapes."""
    escaped = word.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + _specifiers(escaped) + '"'


def _exec_word(word: str) -> str:
    # ExecStart= also expands $VAR and ${VAR}: a literal $ is written $$.
    return _quoted(word).replace("$", "$$")


def _check_line(value: str, what: str) -> str:
    if "\n" in value or "\r" in value:
        raise SystemdUnavailable(f"{what} holds a line break: it cannot go into a unit file")
    return value


def service_text(home: Path, bot: str) -> str:
    env = crontab.job_environment(home, bot)
    log = home / "rotation.log"
    root = crontab.code_root()
    argv = [sys.executable, "-m", "commands", "rotate", "--scheduled"]
    lines = [
        "# Written by `secrets rotate schedule install`; removed by `... schedule remove`.",
        "# The same job as the crontab line: " + _check_line(shlex.join(argv), "the command"),
        "[Unit]",
        f"Description=secrets-ledger scheduled rotation ({_specifiers(str(home))})",
        "",
        "[Service]",
        "Type=oneshot",
        # The log names secrets and operators: keep it as private as the ledger.
        "UMask=0077",
        f"WorkingDirectory={_specifiers(_check_line(str(root), 'the code directory'))}",
        *(f"Environment={_quoted(_check_line(f'{k}={v}', k))}" for k, v in env.items()),
        "ExecStart=" + " ".join(_exec_word(w) for w in argv),
        f"StandardOutput=append:{_specifiers(_check_line(str(log), 'the log path'))}",
        f"StandardError=append:{_specifiers(str(log))}",
        "",
    ]
    return "\n".join(lines)


def timer_text(home: Path, at: str) -> str:
    hour, minute = crontab.parse_at(at)
    return "\n".join(
        [
            "# Written by `secrets rotate schedule install`; removed by `... schedule remove`.",
            "[Unit]",
            f"Description=daily secrets-ledger rotation ({_specifiers(str(home))})",
            "",
            "[Timer]",
            f"OnCalendar=*-*-* {hour:02d}:{minute:02d}:00",
            "Persistent=true",
            f"Unit={unit_name(home)}.service",
            "",
            "[Install]",
            "WantedBy=timers.target",
            "",
        ]
    )


def _systemctl() -> list[str]:
    override = os.environ.get(SYSTEMCTL_VARIABLE, "").strip()
    return shlex.split(override) if override else ["systemctl"]


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = [*_systemctl(), "--user", *args]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    except (FileNotFoundError, PermissionError):
        raise SystemdUnavailable(f"cannot run {argv[0]!r}: is systemd installed?") from None
    except subprocess.TimeoutExpired:
        raise SystemdUnavailable(f"{shlex.join(argv)} did not answer in 60 s") from None
    if check and done.returncode != 0:
        why = (done.stderr or done.stdout).strip()[:200]
        raise SystemdUnavailable(f"{shlex.join(argv[-3:])} failed: {why}")
    return done


def available() -> bool:
    """Whether systemd runs for this user: `systemctl --user` answers (and, with the real
    systemctl, /run/systemd/system exists, systemd's own test for "booted with systemd")."""
    if (
        not os.environ.get(SYSTEMCTL_VARIABLE, "").strip()
        and not Path("/run/systemd/system").is_dir()
    ):
        return False
    try:
        return _run("show-environment", check=False).returncode == 0
    except SystemdUnavailable:
        return False


def install(home: Path, at: str, bot: str) -> None:
    service, timer = unit_paths(home)
    service.parent.mkdir(parents=True, exist_ok=True)
    for path, text in ((service, service_text(home, bot)), (timer, timer_text(home, at))):
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(text)
        os.replace(temporary, path)
    _run("daemon-reload")
    _run("enable", "--now", timer.name)
    # A changed OnCalendar is taken by a restart of an already active timer.
    _run("restart", timer.name)


def installed(home: Path) -> bool:
    """Both unit files are there and the timer is enabled."""
    service, timer = unit_paths(home)
    if not (service.exists() and timer.exists()):
        return False
    try:
        done = _run("is-enabled", timer.name, check=False)
    except SystemdUnavailable:
        return False
    return done.returncode == 0 and done.stdout.strip() == "enabled"


def remove(home: Path) -> bool:
    """Stop and disable the timer and delete both unit files; False if there were none."""
    service, timer = unit_paths(home)
    present = service.exists() or timer.exists()
    if not present:
        return False
    _run("disable", "--now", timer.name, check=False)  # not loaded is fine: the files go
    for path in (timer, service):
        path.unlink(missing_ok=True)
    _run("daemon-reload", check=False)
    return True
