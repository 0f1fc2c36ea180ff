"""`secrets rotate schedule`: a daily `secrets rotate` from cron or a systemd timer, as the
rotation-bot."""

from __future__ import annotations

import os
from enum import StrEnum
from typing import Annotated

import typer

from commands import runtime
from commands.options import HomeOpt, Output, OutputOpt
from commands.rotation.shared import finish, usage_value

schedule_app = typer.Typer(
    help="A daily `secrets rotate` run from cron as the rotation-bot.", no_args_is_help=True
)


class Via(StrEnum):
    cron = "cron"
    systemd = "systemd"


def _choose_scheduler(via: Via | None) -> Via:
    """The explicit --via, else cron when SECRETS_LEDGER_CRONTAB names a file, else a systemd
    user timer where systemd runs for the user, else the crontab."""
    from commands import crontab, systemd_timer

    if via is not None:
        return via
    if os.environ.get(crontab.CRONTAB_VARIABLE, "").strip():
        return Via.cron
    return Via.systemd if systemd_timer.available() else Via.cron


def _crontab_text_or_none() -> str | None:
    """The crontab, or None where there is none to read (a systemd host without cron)."""
    from commands import crontab

    try:
        return crontab.read()
    except crontab.CrontabUnavailable:
        return None


@schedule_app.command("install")
def schedule_install(
    at: Annotated[
        str, typer.Option("--at", help="Daily time HH:MM, in the host's local time zone.")
    ] = "03:00",
    via: Annotated[
        Via | None,
        typer.Option(
            "--via",
            help="cron (a crontab block) or systemd (a user timer). Default: systemd where "
            "systemd runs for you, else cron.",
            show_default=False,
            case_sensitive=False,
        ),
    ] = None,
    home: HomeOpt = None,
) -> None:
    """Install (or update) a daily `secrets rotate` as the rotation-bot: a systemd user timer
    where systemd runs for you, else a crontab entry (--via to choose).

    The bot is a senior-engineer operator whose token stays in the keychain; the job names
    only the ledger's home and tells the CLI to fetch the token from there. Idempotent:
    running it again replaces the job (and re-keys the bot); switching --via removes the
    other kind.

    Example: secrets rotate schedule install --at 02:30
    """
    from commands import crontab, systemd_timer
    from ledger.access.policy import Permission
    from ledger.rotation.runs import BOT_OPERATOR, Rotator

    usage_value(crontab.parse_at, at)
    chosen = _choose_scheduler(via)
    ledger = runtime.open_ledger(home)
    rotator = Rotator(ledger)
    cred = runtime.credential(ledger)
    ledger.authorize(cred, Permission.ADMIN, "rotate-schedule-install")
    mark = crontab.marker(ledger.home)
    log = f"{ledger.home}/rotation.log"
    if chosen is Via.cron:
        current = crontab.read()  # fail before enlisting the bot if cron cannot be used
        rotator.enlist_bot(cred)
        crontab.write(
            crontab.with_block(current, mark, [crontab.job_line(ledger.home, at, BOT_OPERATOR)])
        )
        systemd_timer.remove(ledger.home)  # one job per ledger, never two
        entry = mark
        where = "in your crontab"
    else:
        # Fail before enlisting the bot if systemd cannot take the timer.
        if via is not None and not systemd_timer.available():
            raise systemd_timer.SystemdUnavailable(
                "systemctl --user does not answer: systemd is not running for you here; "
                "use --via cron"
            )
        systemd_timer.service_text(ledger.home, BOT_OPERATOR)
        rotator.enlist_bot(cred)
        systemd_timer.install(ledger.home, at, BOT_OPERATOR)
        current_cron = _crontab_text_or_none()
        if current_cron is not None:
            text, found = crontab.without_block(current_cron, mark)
            if found:
                crontab.write(text)
        entry = f"systemd:{systemd_timer.unit_name(ledger.home)}.timer"
        where = f"as systemd user timer {systemd_timer.unit_name(ledger.home)}.timer"
    rotator.record_schedule(cred, "installed", at, entry)
    print(f"rotation scheduled daily at {at} {where} as {BOT_OPERATOR} (log: {log})")
    if os.environ.get("SECRETS_LEDGER_PASSPHRASE") and not os.environ.get(
        "SECRETS_LEDGER_PASSPHRASE_FILE"
    ):
        runtime.info(
            "warning: the job cannot see SECRETS_LEDGER_PASSPHRASE (it is never written to "
            "the crontab or the unit); use SECRETS_LEDGER_PASSPHRASE_FILE for the file vault"
        )


@schedule_app.command("status")
def schedule_status(home: HomeOpt = None, output: OutputOpt = Output.table) -> None:
    """Show whether the schedule is installed here (crontab block or systemd user timer) and
    when it last ran (exit 1 if not installed or if this host and the ledger disagree).

    Example: secrets rotate schedule status
    """
    from commands import crontab, systemd_timer
    from ledger.access.policy import Permission
    from ledger.rotation.runs import Rotator
    from projections.compliance import describe_schedule
    from projections.timefmt import iso

    ledger = runtime.open_ledger(home)
    ledger.authorize(runtime.credential(ledger), Permission.AUDIT, "rotate-schedule-status")
    rotator = Rotator(ledger)
    state = rotator.schedule_state()
    cron_text = _crontab_text_or_none()
    in_crontab = bool(cron_text and crontab.find_block(cron_text, crontab.marker(ledger.home)))
    in_systemd = systemd_timer.installed(ledger.home)
    here = in_crontab or in_systemd
    token = rotator.bot_ready()
    healthy = state.installed and here and token
    kinds = [k for k, present in (("cron", in_crontab), ("systemd", in_systemd)) if present]
    if output is Output.json:
        last = state.last_run
        runtime.emit_json(
            {
                "installed": state.installed,
                "in_crontab": in_crontab,
                "in_systemd": in_systemd,
                "via": kinds[0] if len(kinds) == 1 else (kinds or None),
                "bot_token_in_keychain": token,
                "at": state.at,
                "host": state.host,
                "changed": iso(state.changed) if state.changed else None,
                "last_run": None
                if last is None
                else {
                    "started": iso(last.started),
                    "ended": iso(last.ended) if last.ended else None,
                    "complete": last.complete,
                    "rotated": last.rotated,
                    "needs_value": last.needs_value,
                    "failed": last.failed,
                },
            }
        )
    else:
        print(f"Rotation Schedule: {describe_schedule(state)}")
        print(f"crontab block on this host: {'present' if in_crontab else 'absent'}")
        timer = f"{systemd_timer.unit_name(ledger.home)}.timer"
        print(f"systemd user timer on this host: {timer if in_systemd else 'absent'}")
        print(f"rotation-bot token in keychain: {'yes' if token else 'no'}")
        if state.installed != here:
            print("warning: the ledger and this host's scheduler disagree; run install or remove")
        if in_crontab and in_systemd:
            print("warning: both a crontab block and a systemd timer run the job; reinstall")
    finish(0 if healthy else 1)


@schedule_app.command("remove")
def schedule_remove(home: HomeOpt = None) -> None:
    """Remove the crontab block and the systemd user timer, revoke the rotation-bot and
    forget its token.

    Example: secrets rotate schedule remove
    """
    from commands import crontab, systemd_timer
    from ledger.access.policy import Permission
    from ledger.rotation.runs import Rotator

    ledger = runtime.open_ledger(home)
    rotator = Rotator(ledger)
    cred = runtime.credential(ledger)
    ledger.authorize(cred, Permission.ADMIN, "rotate-schedule-remove")
    mark = crontab.marker(ledger.home)
    in_systemd = systemd_timer.remove(ledger.home)
    cron_text = crontab.read() if not in_systemd else _crontab_text_or_none()
    found = False
    if cron_text is not None:
        text, found = crontab.without_block(cron_text, mark)
        if found:
            crontab.write(text)
    bot = rotator.retire_bot(cred)
    rotator.record_schedule(cred, "removed", None, mark)
    removed = [
        what
        for what, done in (("crontab block", found), ("systemd user timer", in_systemd))
        if done
    ]
    print(
        (" and ".join(removed) + " removed" if removed else "no crontab block or timer here")
        + ("; rotation-bot revoked" if bot else "")
    )
