"""Rotation commands: rotate (one, due, all; schedule), rotate-status, emergency-rotate,
provision."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from commands import runtime
from commands.options import CatalogueOpt, HomeOpt, Output, OutputOpt

if TYPE_CHECKING:
    from ledger.address import SecretAddress
    from ledger.application import SecretsLedger
    from ledger.rotation import BatchReport, ProvisionReport, Rotator

_T = TypeVar("_T")

DEFAULT_ENV = "default"

ValuesFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--values-file",
        help="New values by address env/service/name (TOML, JSON or dotenv).",
        show_default=False,
    ),
]

rotate_app = typer.Typer(no_args_is_help=False)
schedule_app = typer.Typer(
    help="A daily `secrets rotate` run from cron as the rotation-bot.", no_args_is_help=True
)
rotate_app.add_typer(schedule_app, name="schedule")


def register(app: typer.Typer) -> None:
    app.add_typer(rotate_app, name="rotate")
    app.command("rotate-status")(rotate_status)
    app.command("emergency-rotate")(emergency_rotate)
    app.command("provision")(provision)


# -- helpers -----------------------------------------------------------------------------------


def _rotator(ledger: SecretsLedger, catalogue: Path | None) -> Rotator:
    from ledger.catalogue import load_catalogue
    from ledger.rotation import Rotator

    return Rotator(ledger, load_catalogue(catalogue))


def _values(path: Path | None) -> dict[SecretAddress, str]:
    from commands.values_file import load_values, warn_if_exposed

    if path is None:
        return {}
    warning = warn_if_exposed(path)
    if warning:
        runtime.info(warning)
    return load_values(path)


class _Progress:
    """A progress bar on a terminal (stderr); silence when piped, where the summary suffices."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._bar: Any = None
        self._task: Any = None

    def plan(self, total: int) -> None:
        if total == 0 or not sys.stderr.isatty():
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[current]}"),
            console=Console(stderr=True),
            transient=True,
        )
        self._bar.start()
        self._task = self._bar.add_task(self.label, total=total, current="")

    def step(self, address: str, outcome: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=1, current=f"{address}: {outcome}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


@contextmanager
def _progress(label: str) -> Iterator[_Progress]:
    shown = _Progress(label)
    try:
        yield shown
    finally:
        shown.close()


def _batch_json(report: BatchReport) -> dict[str, Any]:
    return {
        "scope": report.scope,
        "run_id": report.run_id,
        "resumed": report.resumed,
        "incident_id": report.incident_id,
        "complete": report.complete,
        "rotated": [{"address": a, "version": v, "fingerprint": fp} for a, v, fp in report.rotated],
        "needs_value": report.needs_value,
        "failed": [{"address": a, "error": why} for a, why in report.failed],
        "rejected": [{"address": a, "rule": rule} for a, rule in report.rejected],
        "skipped": [{"address": a, "reason": why} for a, why in report.skipped],
        "unused_values": report.unused,
        "sessions_closed": report.sessions_closed,
    }


def _batch_lines(report: BatchReport) -> list[str]:
    lines = [f"rotated      {a} v{v} [{fp}]" for a, v, fp in report.rotated]
    lines += [f"needs value  {a} (provider-issued: use --values-file)" for a in report.needs_value]
    lines += [f"failed       {a}: {why}" for a, why in report.failed]
    lines += [f"rejected     {a}: rule {rule}" for a, rule in report.rejected]
    lines += [f"skipped      {a}: {why}" for a, why in report.skipped]
    lines += [f"unused value {a} (already rotated in this run)" for a in report.unused]
    return lines


def _batch_exit(report: BatchReport) -> int:
    from commands.exit_codes import ExitCode

    if report.rejected:
        return ExitCode.VALIDATION_FAILED
    if report.needs_value or report.failed:
        return ExitCode.ERROR
    return ExitCode.OK


def _usage(parse: Callable[[str], _T], text: str) -> _T:
    """`parse(text)` for an option's value; a malformed value is a usage error (exit 2), as
    for every other option (docs/rotation.md)."""
    from commands.value_input import UsageProblem
    from ledger.errors import ValidationFailed

    try:
        return parse(text)
    except ValidationFailed as exc:
        raise UsageProblem(str(exc)) from None


def _finish(code: int) -> None:
    if code:
        raise typer.Exit(code)


# -- rotate ------------------------------------------------------------------------------------


@rotate_app.callback(invoke_without_command=True)
def rotate(
    ctx: typer.Context,
    service: Annotated[
        str | None, typer.Option("--service", "-s", help="Rotate this one secret's service.")
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="Rotate this one secret's key name.")
    ] = None,
    environment: Annotated[
        str,
        typer.Option(
            "--environment",
            "-e",
            envvar="SECRETS_LEDGER_ENVIRONMENT",
            help="Environment of the one secret (batches cover every environment).",
        ),
    ] = DEFAULT_ENV,
    all_: Annotated[
        bool, typer.Option("--all", help="Rotate every secret, not only the due ones.")
    ] = False,
    values_file: ValuesFileOpt = None,
    partial: Annotated[
        bool,
        typer.Option("--partial", help="Rotate what can be rotated when some values are bad."),
    ] = False,
    fresh: Annotated[
        bool,
        typer.Option("--fresh", help="Start a new --all run instead of finishing an open one."),
    ] = False,
    value_file: Annotated[
        Path | None, typer.Option("--value-file", help="The one secret's new value, from a file.")
    ] = None,
    value_stdin: Annotated[
        bool, typer.Option("--value-stdin", help="The one secret's new value, from stdin.")
    ] = False,
    scheduled: Annotated[
        bool,
        typer.Option(
            "--scheduled",
            hidden=True,
            help="Record the run as the schedule's (the cron job and systemd timer pass it).",
        ),
    ] = False,
    catalogue: CatalogueOpt = None,
    home: HomeOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Rotate secrets: every due one (default), every one (--all), or one (--service --name).

    Generated kinds get a fresh random value; external kinds need the provider's new value
    (--value-stdin / --value-file / prompt for one secret, --values-file for many) and are
    listed as still needing one otherwise (exit 1). An interrupted run is finished by running
    the same command again.

    Examples: secrets rotate; secrets rotate --all --values-file new.toml;
    printf %s "$KEY" | secrets rotate --service nexus --name mcp.bun.apiKey --value-stdin
    """
    from commands.value_input import UsageProblem

    if ctx.invoked_subcommand is not None:
        return
    single = service is not None or name is not None
    if single:
        if service is None or name is None:
            raise UsageProblem("give both --service and --name to rotate one secret")
        if all_ or values_file is not None or partial or fresh:
            raise UsageProblem("--all, --values-file, --partial and --fresh are for batches")
        _rotate_one(service, name, environment, value_file, value_stdin, catalogue, home, output)
        return
    if value_file is not None or value_stdin:
        raise UsageProblem("--value-file/--value-stdin need --service and --name")
    _rotate_batch(
        "all" if all_ else "due", values_file, partial, fresh, scheduled, catalogue, home, output
    )


def _rotate_one(
    service: str,
    name: str,
    environment: str,
    value_file: Path | None,
    value_stdin: bool,
    catalogue: Path | None,
    home: Path | None,
    output: Output,
) -> None:
    from commands.value_input import read_value

    ledger = runtime.open_ledger(home)
    rotator = _rotator(ledger, catalogue)
    addr = runtime.address(environment, service, name)
    cred = runtime.credential(ledger)
    value: str | None = None
    if value_file is not None or value_stdin or rotator.kind(addr) == "external":
        # Refuse before asking: no prompt for a value that could not be used.
        rotator.check_rotatable(cred, addr)
        value = read_value(
            None, value_file, value_stdin, prompt=f"New value for {addr}", address=str(addr)
        )
    added = rotator.rotate(cred, addr, value)
    if output is Output.json:
        runtime.emit_json(
            {
                "environment": addr.environment,
                "service": addr.service,
                "name": addr.name,
                "version": added.number,
                "fingerprint": added.short_fingerprint,
                "reason": added.reason,
            }
        )
        return
    print(f"{addr} v{added.number} [{added.short_fingerprint}] (rotation)")


def _rotate_batch(
    scope: str,
    values_file: Path | None,
    partial: bool,
    fresh: bool,
    scheduled: bool,
    catalogue: Path | None,
    home: Path | None,
    output: Output,
) -> None:
    ledger = runtime.open_ledger(home)
    rotator = _rotator(ledger, catalogue)
    values = _values(values_file)
    cred = runtime.credential(ledger)
    with _progress("rotating") as shown:
        report = rotator.rotate_batch(
            cred,
            scope,
            values,
            partial=partial,
            fresh=fresh,
            trigger="schedule" if scheduled else "manual",
            on_progress=shown.step,
            on_plan=shown.plan,
        )
    if output is Output.json:
        runtime.emit_json(_batch_json(report))
    else:
        lines = _batch_lines(report)
        if lines:
            print("\n".join(lines))
        resumed = ", resumed" if report.resumed else ""
        print(
            f"Summary: {len(report.rotated)} rotated, {len(report.needs_value)} need a "
            f"provider-issued value, {len(report.failed)} failed, {len(report.rejected)} "
            f"rejected ({'every secret' if scope == 'all' else 'due secrets'}, "
            f"run {report.run_id[:12]}{resumed})"
        )
    _finish(_batch_exit(report))


# -- rotate schedule ---------------------------------------------------------------------------


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
    from ledger.policy import Permission
    from ledger.rotation import BOT_OPERATOR, Rotator

    _usage(crontab.parse_at, at)
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
    from ledger.policy import Permission
    from ledger.rotation import Rotator
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
    _finish(0 if healthy else 1)


@schedule_app.command("remove")
def schedule_remove(home: HomeOpt = None) -> None:
    """Remove the crontab block and the systemd user timer, revoke the rotation-bot and
    forget its token.

    Example: secrets rotate schedule remove
    """
    from commands import crontab, systemd_timer
    from ledger.policy import Permission
    from ledger.rotation import Rotator

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


# -- rotate-status -----------------------------------------------------------------------------


def rotate_status(
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Evaluate at this ISO 8601 date (end of that day, UTC) or date-time, "
            "from the ledger's history as it stood then.",
            show_default=False,
        ),
    ] = None,
    environment: Annotated[
        str | None,
        typer.Option("--environment", "-e", help="Only this environment (default: all)."),
    ] = None,
    catalogue: CatalogueOpt = None,
    home: HomeOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Rotation compliance: last rotation, next due date, status, and every secret's state.

    Exit 0 when nothing is overdue or awaiting emergency rotation, 1 otherwise.

    Examples: secrets rotate-status; secrets rotate-status --as-of 2026-03-01 --output json
    """
    from commands.exit_codes import ExitCode
    from ledger import context
    from ledger.catalogue import load_catalogue
    from ledger.policy import Permission
    from projections.compliance import compliance, parse_as_of

    when = _usage(parse_as_of, as_of) if as_of is not None else context.now()
    spec = load_catalogue(catalogue)
    ledger = runtime.open_ledger(home)
    ledger.authorize(runtime.credential(ledger), Permission.AUDIT, "rotate-status")
    report = compliance(ledger, spec, when, environment)
    if output is Output.json:
        runtime.emit_json(report.as_json())
    else:
        lines = report.header()
        if report.secrets:
            lines += [
                "",
                runtime.table(
                    ["SECRET", "KIND", "LAST ROTATION", "AGE", "DUE", "STATUS"], report.rows()
                ),
            ]
            if any(not a.catalogued for a in report.secrets):
                lines.append("* not in the catalogue: treated as external, 90/14 days")
        print("\n".join(lines))
    _finish(ExitCode.OK if report.compliant else ExitCode.ERROR)


# -- emergency-rotate --------------------------------------------------------------------------


def emergency_rotate(
    reason: Annotated[
        str, typer.Option("--reason", help="Why (recorded on the incident).")
    ] = "emergency rotation",
    values_file: ValuesFileOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    catalogue: CatalogueOpt = None,
    home: HomeOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """If secrets are compromised: rotate everything now and end other sessions.

    Senior-engineer only. Every secret is rotated under one incident (reason emergency) and
    every operator session except the caller's is ended.

    External kinds are listed as needing a provider-issued value; run again with
    --values-file to finish the same incident.

    Example: secrets emergency-rotate --reason "laptop stolen"
    """
    ledger = runtime.open_ledger(home)
    rotator = _rotator(ledger, catalogue)
    values = _values(values_file)
    cred = runtime.credential(ledger)
    if not yes and sys.stdin.isatty() and sys.stderr.isatty():
        typer.confirm(
            "Rotate EVERY secret now and end every other operator session?",
            abort=True,
            err=True,
        )
    with _progress("emergency rotation") as shown:
        report = rotator.emergency(cred, reason, values, on_progress=shown.step, on_plan=shown.plan)
    if output is Output.json:
        runtime.emit_json(_batch_json(report))
    else:
        resumed = " (resumed)" if report.resumed else ""
        print(f"Incident {report.incident_id}{resumed}: {reason}")
        print(f"Sessions ended: {report.sessions_closed}")
        print(f"Rotated: {len(report.rotated)}")
        for a, v, fp in report.rotated:
            print(f"  {a} v{v} [{fp}]")
        print(f"Needing a provider-issued value: {len(report.needs_value)}")
        for a in report.needs_value:
            print(f"  {a}")
        print(f"Failed: {len(report.failed) + len(report.rejected)}")
        for a, why in report.failed:
            print(f"  {a}: {why}")
        for a, rule in report.rejected:
            print(f"  {a}: value rejected (rule {rule})")
        if report.needs_value:
            print(
                "next: obtain new values from the providers, then "
                "secrets emergency-rotate --values-file FILE"
            )
    _finish(_batch_exit(report))


# -- provision ---------------------------------------------------------------------------------


def provision(
    environment: Annotated[
        str, typer.Option("--environment", "-e", help="Environment to fill, e.g. production.")
    ],
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from", help="Values for external and identifier keys (TOML, JSON or dotenv)."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be created; write nothing.")
    ] = False,
    catalogue: CatalogueOpt = None,
    home: HomeOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Create every catalogue key missing in an environment (idempotent).

    Generated kinds are generated; others come from --from or are listed as missing (exit 1).

    Example: secrets provision --environment production --from prod-values.toml
    """
    ledger = runtime.open_ledger(home)
    rotator = _rotator(ledger, catalogue)
    values = _values(from_file)
    cred = runtime.credential(ledger)
    with _progress("provisioning") as shown:
        report = rotator.provision(
            cred,
            environment,
            values,
            dry_run=dry_run,
            on_progress=shown.step,
            on_plan=shown.plan,
        )
    if output is Output.json:
        runtime.emit_json(_provision_json(report))
    else:
        print("\n".join(_provision_lines(report)))
    _finish(0 if report.complete else 1)


def _provision_json(report: ProvisionReport) -> dict[str, Any]:
    return {
        "environment": report.environment,
        "dry_run": report.dry_run,
        "complete": report.complete,
        "created": [
            {"address": a, "version": v or None, "fingerprint": fp or None}
            for a, v, fp in report.created
        ],
        "missing": report.missing,
        "present": report.present,
        "deleted": report.deleted,
        "ignored_values": report.ignored,
        "failed": [{"address": a, "error": why} for a, why in report.failed],
    }


def _provision_lines(report: ProvisionReport) -> list[str]:
    verb = "would create" if report.dry_run else "created"
    lines = [f"{verb:<12} {a}" + (f" v{v} [{fp}]" if v else "") for a, v, fp in report.created]
    lines += [f"missing      {a} (give it in --from)" for a in report.missing]
    lines += [f"present      {a}" for a in report.present]
    lines += [f"deleted      {a} (restore it or set it; not recreated)" for a in report.deleted]
    lines += [f"ignored      {a} (already present: use rotate)" for a in report.ignored]
    lines += [f"failed       {a}: {why}" for a, why in report.failed]
    prefix = "Dry run: " if report.dry_run else ""
    lines.append(
        f"{prefix}{len(report.created)} {verb}, {len(report.missing)} missing, "
        f"{len(report.present)} already present in {report.environment}"
    )
    return lines
