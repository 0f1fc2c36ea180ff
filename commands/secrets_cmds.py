"""The everyday commands: init, set, get, list, versions, rollback, delete, restore, destroy,
doctor."""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from commands import runtime
from commands.exit_codes import ExitCode
from commands.options import (
    CatalogueOpt,
    DatabaseUrlOpt,
    EnvironmentOpt,
    HomeOpt,
    IfVersionOpt,
    NameOpt,
    Output,
    OutputOpt,
    ServiceOpt,
    complete_environment,
)

if TYPE_CHECKING:
    from commands.init_undo import Undo as InitUndo
    from ledger.application import SecretsLedger

DEFAULT_ENV = "default"


class VaultChoice(StrEnum):
    keychain = "keychain"
    file = "file"


# SECRETS_LEDGER_VAULT values that ask for one vault kind (auto asks for none).
_ENV_VAULT = {"keyring": VaultChoice.keychain, "file": VaultChoice.file}


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("set")(set_secret)
    app.command("get")(get)
    app.command("list")(list_secrets)
    app.command("versions")(versions)
    app.command("rollback")(rollback)
    app.command("delete")(delete)
    app.command("restore")(restore)
    app.command("destroy")(destroy)
    app.command("doctor")(doctor)


def init(
    home: HomeOpt = None,
    database_url: DatabaseUrlOpt = None,
    operator: Annotated[
        str | None,
        typer.Option("--operator", help="Name of the first operator (default: your login name)."),
    ] = None,
    retention: Annotated[
        int, typer.Option("--retention", help="How many versions keep their values.")
    ] = 10,
    vault: Annotated[
        VaultChoice | None,
        typer.Option(
            "--vault",
            help="Where this host keeps the values: the OS keychain or the encrypted file "
            "vault (default: the keychain if there is one, else the file vault). Recorded in "
            "the ledger: every later command uses it.",
            show_default=False,
            case_sensitive=False,
        ),
    ] = None,
    output: OutputOpt = Output.table,
) -> None:
    """Create the ledger and its first senior-engineer operator (idempotent).

    Prints the operator's token once: keep it, it is never shown again. The vault the
    values go to (--vault, or the one found) is recorded in the ledger.

    Example: secrets init --operator alice
    """
    import getpass

    from commands.value_input import UsageProblem
    from ledger.access.session_file import session_path

    asked = os.environ.get("SECRETS_LEDGER_VAULT", "").strip().lower()
    if vault is not None and _ENV_VAULT.get(asked, vault) is not vault:
        raise UsageProblem(
            f"--vault {vault} and SECRETS_LEDGER_VAULT={asked} ask for different vaults"
        )
    first = operator or getpass.getuser()
    runtime.claim_operator(first)
    undo = _init_undo(home, database_url)
    ledger = runtime.open_ledger(home, create=True)
    if ledger.is_initialized():
        recorded = ledger.recorded_vault()
        if vault is not None and recorded is not None and vault != recorded:
            raise UsageProblem(
                f"this ledger keeps this host's values in the {recorded} vault (recorded at "
                f"init); --vault {vault} cannot change that"
            )
        # Running README's first command again as the founder asks for nothing new: refusing
        # it would record a denial that looks like an intrusion (HBSE-006) where there is none.
        if operator is not None and operator != ledger.founder():
            raise ledger.refuse_second_init(operator)
        runtime.info(
            f"ledger already initialised at {ledger.location or ledger.home}; nothing changed"
        )
        if output is Output.json:
            runtime.emit_json({"created": False, "home": str(ledger.home)})
        return
    try:
        issued = ledger.initialize(first, retention, None if vault is None else str(vault))
    except BaseException:
        if undo is not None:
            runtime.close_opened()  # SQLite's own files first
            if undo.undo():
                runtime.info(f"init failed: removed the unfinished ledger file from {undo.home}")
        raise
    if issued is None:
        runtime.info(
            f"ledger already initialised at {ledger.location or ledger.home}; nothing changed"
        )
        return
    kind = ledger.recorded_vault()
    if output is Output.json:
        runtime.emit_json(
            {"operator": first, "role": "senior-engineer", "token": issued.token, "vault": kind}
        )
        return
    runtime.info(
        f"ledger created at {ledger.location or ledger.home} "
        f"(vault: {kind}, {ledger.vault.description})"
    )
    runtime.info(f"operator {first!r} is senior-engineer. Token (shown once, keep it safe):")
    print(issued.token)
    runtime.info(
        f"next: secrets auth login --operator {first}   (session file: {session_path(ledger.home)})"
    )


def _init_undo(home: Path | None, database_url: str | None) -> InitUndo | None:
    """How to remove what a failed init creates: for the SQLite ledger in the home only (a
    PostgreSQL store is the server's, never removed)."""
    from commands.init_undo import Undo
    from ledger.store.config import DATABASE_FILE
    from ledger.store.database_url import configured_url

    if configured_url(database_url):
        return None
    return Undo(runtime.home_dir(home), DATABASE_FILE)


def set_secret(
    service: ServiceOpt,
    name: NameOpt,
    value: Annotated[
        str | None,
        typer.Option("--value", help="The value (lands in shell history: prefer stdin)."),
    ] = None,
    value_file: Annotated[
        Path | None, typer.Option("--value-file", help="Read the value from this file.")
    ] = None,
    value_stdin: Annotated[
        bool, typer.Option("--value-stdin", help="Read the value from standard input.")
    ] = False,
    environment: EnvironmentOpt = DEFAULT_ENV,
    catalogue: CatalogueOpt = None,
    if_version: IfVersionOpt = None,
    home: HomeOpt = None,
    database_url: DatabaseUrlOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Store a new version of a secret. Prints the version and fingerprint, never the value.

    The value is checked against its key's format in the catalogue (the built-in one plus
    the team's `--catalogue` file); a rejected value is recorded (HBSE-007) and exits 5.
    With --if-version N nothing is written unless the current version is N (exit 7).

    Example: printf %s "$KEY" | secrets set --service nexus --name mcp.bun.apiKey --value-stdin
    """
    from commands.value_input import read_value
    from ledger.rotation.catalogue import load_catalogue
    from ledger.validation import validate_value

    spec = load_catalogue(catalogue).lookup(service, name)  # a bad file fails before any prompt
    ledger = runtime.open_ledger(home)
    addr = runtime.address(environment, service, name)
    secret_value = read_value(
        value, value_file, value_stdin, prompt=f"Value for {addr}", address=str(addr)
    )
    cred = runtime.credential(ledger)
    added = ledger.write(
        cred,
        addr,
        secret_value,
        spec_check=lambda v: validate_value(spec, v, addr),
        expected=if_version,
    )
    if output is Output.json:
        runtime.emit_json(
            {
                "environment": environment,
                "service": service,
                "name": name,
                "version": added.number,
                "fingerprint": added.short_fingerprint,
            }
        )
        return
    print(f"{addr} v{added.number} [{added.short_fingerprint}]")


def get(
    service: ServiceOpt,
    name: NameOpt,
    version: Annotated[
        int | None,
        typer.Option("--version", min=1, help="A past version (default: current)."),
    ] = None,
    environment: EnvironmentOpt = DEFAULT_ENV,
    home: HomeOpt = None,
    database_url: DatabaseUrlOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Print a secret's value alone on stdout (the read is recorded in the audit log).

    Example: secrets get --service nexus --name mcp.bun.apiKey
    """
    ledger = runtime.open_ledger(home)
    addr = runtime.address(environment, service, name)
    chosen, value = ledger.read(runtime.credential(ledger), addr, version)
    if output is Output.json:
        runtime.emit_json(
            {
                "environment": environment,
                "service": service,
                "name": name,
                "version": chosen.number,
                "value": value,
            }
        )
        return
    # A newline only for people: scripts capturing stdout get the exact value.
    sys.stdout.write(value + ("\n" if sys.stdout.isatty() else ""))


def list_secrets(
    environment: Annotated[
        str | None,
        typer.Option(
            "--environment",
            "-e",
            help="Only this environment (default: all).",
            autocompletion=complete_environment,
        ),
    ] = None,
    deleted: Annotated[bool, typer.Option("--deleted", help="Include deleted secrets.")] = False,
    home: HomeOpt = None,
    database_url: DatabaseUrlOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """List every secret with its current version and fingerprint; values are masked.

    Example: secrets list --environment production
    """
    from ledger.access.policy import Permission

    ledger = runtime.open_ledger(home)
    ledger.authorize(runtime.credential(ledger), Permission.MANAGE, "list")
    rows = runtime.views(ledger).secrets(environment, include_deleted=deleted)
    if output is Output.json:
        runtime.emit_json({"secrets": [r.as_json() for r in rows]})
        return
    if not rows:
        runtime.info("no secrets")
        return
    print(
        runtime.table(
            [
                "ENVIRONMENT",
                "SERVICE",
                "NAME",
                "VERSION",
                "FINGERPRINT",
                "LAST CHANGE",
                "OPERATOR",
                "LAST READ",
                "VALUE",
            ],
            [
                [
                    r.environment,
                    r.service,
                    r.name + (" (deleted)" if r.deleted else ""),
                    f"v{r.current_version}",
                    f"[{r.fingerprint[:12]}]",
                    r.last_change,
                    r.operator,
                    f"{r.last_read} by {r.last_reader}" if r.last_read else "never",
                    "********",
                ]
                for r in rows
            ],
        )
    )


def versions(
    service: ServiceOpt,
    name: NameOpt,
    environment: EnvironmentOpt = DEFAULT_ENV,
    home: HomeOpt = None,
    database_url: DatabaseUrlOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Show a secret's version history (no values).

    Example: secrets versions --service nexus --name mcp.bun.apiKey
    """
    from projections.timefmt import iso

    ledger = runtime.open_ledger(home)
    addr = runtime.address(environment, service, name)
    secret = ledger.history(runtime.credential(ledger), addr)
    history = sorted(secret.versions.values(), key=lambda v: v.number, reverse=True)
    last = secret.last_rotation
    if output is Output.json:
        # The last read comes from the views (the reads are not part of the secret's events).
        row = next(
            (
                r
                for r in runtime.views(ledger).secrets(environment, include_deleted=True)
                if (r.service, r.name) == (service, name)
            ),
            None,
        )
        runtime.emit_json(
            {
                "environment": environment,
                "service": service,
                "name": name,
                "current_version": secret.current_version,
                "last_rotation": iso(last) if last else None,
                "last_read": row.last_read_json() if row is not None else None,
                "deleted": secret.deleted,
                "destroyed": secret.destroyed,
                "versions": [
                    {
                        "version": v.number,
                        "timestamp": iso(v.timestamp),
                        "reason": v.reason,
                        "operator": v.operator,
                        "fingerprint": v.short_fingerprint,
                        "retained": v.retained,
                        "rolled_back_from": v.rolled_back_from,
                        "host": v.host,
                    }
                    for v in history
                ],
            }
        )
        return
    lines = [
        f"Current Version: {secret.current_version}",
        f"Last Rotation: {iso(last) if last else 'Never'}",
    ]
    if secret.deleted:
        lines.append("Status: destroyed" if secret.destroyed else "Status: deleted")
    lines.append("Versions:")
    for v in history:
        # Destroy removes every value left; the retention policy prunes old ones.
        note = (
            "" if v.retained else (" (value destroyed)" if secret.destroyed else " (value pruned)")
        )
        lines.append(
            f"  v{v.number} - {iso(v.timestamp)} ({v.reason}) [{v.short_fingerprint}]{note}"
        )
    print("\n".join(lines))


def rollback(
    service: ServiceOpt,
    name: NameOpt,
    version: Annotated[int, typer.Option("--version", min=1, help="The version to bring back.")],
    environment: EnvironmentOpt = DEFAULT_ENV,
    if_version: IfVersionOpt = None,
    home: HomeOpt = None,
    database_url: DatabaseUrlOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Write an earlier version's value as a new version (reason: rollback).

    Example: secrets rollback --service nexus --name mcp.bun.apiKey --version 2
    """
    ledger = runtime.open_ledger(home)
    addr = runtime.address(environment, service, name)
    added = ledger.rollback(runtime.credential(ledger), addr, version, if_version)
    if output is Output.json:
        runtime.emit_json(
            {
                "environment": environment,
                "service": service,
                "name": name,
                "version": added.number,
                "fingerprint": added.short_fingerprint,
                "rolled_back_from": version,
            }
        )
        return
    print(f"{addr} v{added.number} [{added.short_fingerprint}] (rolled back from v{version})")


def _lifecycle(
    action: str, service: str, name: str, environment: str, home: Path | None, output: Output
) -> None:
    ledger = runtime.open_ledger(home)
    addr = runtime.address(environment, service, name)
    cred = runtime.credential(ledger)
    leftovers: list[str] = []
    if action == "delete":
        ledger.delete(cred, addr)
    elif action == "restore":
        ledger.restore(cred, addr)
    else:
        _, leftovers = ledger.destroy(cred, addr)
    past = {"delete": "deleted", "restore": "restored", "destroy": "destroyed"}[action]
    if output is Output.json:
        runtime.emit_json(
            {
                "environment": environment,
                "service": service,
                "name": name,
                "result": past,
                "values_not_removed": leftovers,
            }
        )
    else:
        print(f"{addr} {past}")
    for item in leftovers:
        runtime.info(f"warning: could not remove {item} from the keychain; run `secrets doctor`")


def delete(
    service: ServiceOpt,
    name: NameOpt,
    environment: EnvironmentOpt = DEFAULT_ENV,
    home: HomeOpt = None,
    database_url: DatabaseUrlOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Soft-delete a secret: hidden from list and get, restorable with `secrets restore`.

    Example: secrets delete --service nexus --name mcp.expired.apiKey
    """
    _lifecycle("delete", service, name, environment, home, output)


def restore(
    service: ServiceOpt,
    name: NameOpt,
    environment: EnvironmentOpt = DEFAULT_ENV,
    home: HomeOpt = None,
    database_url: DatabaseUrlOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Undo a delete.

    Example: secrets restore --service nexus --name mcp.expired.apiKey
    """
    _lifecycle("restore", service, name, environment, home, output)


def destroy(
    service: ServiceOpt,
    name: NameOpt,
    environment: EnvironmentOpt = DEFAULT_ENV,
    home: HomeOpt = None,
    database_url: DatabaseUrlOpt = None,
    output: OutputOpt = Output.table,
    yes: Annotated[
        bool,
        typer.Option("--yes", "-y", help="Do not ask for confirmation (required off a terminal)."),
    ] = False,
) -> None:
    """Remove every value of a secret from the keychain for good; its history stays.

    Asks for confirmation on a terminal; a script must pass --yes.

    Example: secrets destroy --service nexus --name mcp.expired.apiKey --yes
    """
    if not yes:
        _confirm_destroy(runtime.address(environment, service, name))
    _lifecycle("destroy", service, name, environment, home, output)


def _confirm_destroy(address: object) -> None:
    """Ask on a terminal; refuse (exit 2) anywhere else: destroying cannot be undone, so a
    script must say --yes rather than destroy because nobody was there to answer."""
    from commands.value_input import UsageProblem

    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise UsageProblem(
            f"destroy removes every value of {address} for good and asks first; "
            "no terminal to ask on: pass --yes to destroy without asking"
        )
    if not typer.confirm(
        f"Remove every value of {address} for good (this cannot be undone)?", err=True
    ):
        runtime.info("not destroyed: nothing changed")
        raise typer.Exit(ExitCode.ERROR)


def doctor(
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Remove orphaned and leftover keychain entries, drop stored snapshots "
            "that differ from their events, and rebuild damaged indexes of the ledger file.",
        ),
    ] = False,
    home: HomeOpt = None,
    database_url: DatabaseUrlOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Check that the keychain and the ledger agree (exit 6 when they do not).

    Lists values the ledger records but the keychain lacks, keychain entries no event refers
    to (left by a crash, or put there by hand), and values of pruned or destroyed versions
    still present. Orphans are found by listing this ledger's keychain entries (Secret
    Service, the encrypted file vault); a keychain that cannot list (macOS, Windows) is
    checked through the pending-write journal only, and the report says so. A write still
    running in another process is shown as in progress and never repaired. On a shared
    ledger only this host's versions are checked; the others are listed per host. A SQLite
    ledger file is read whole first, its indexes checked against its rows.

    Example: secrets doctor --repair
    """
    from eventsourcing.persistence import MapperDeserialisationError

    from commands.main import UNDECODABLE
    from ledger.errors import IntegrityFailure

    ledger = runtime.open_ledger(home)
    try:
        report = ledger.doctor(runtime.credential(ledger), repair=repair)
    except (IntegrityFailure, MapperDeserialisationError) as exc:
        damaged = str(exc) if isinstance(exc, IntegrityFailure) else UNDECODABLE
        if output is Output.json:
            # A monitor reading stdout gets a document for a damaged ledger file or event
            # too; the error and its hint still go to stderr, exit 6.
            runtime.emit_json({"host": ledger.host, "healthy": False, "damaged": damaged})
        if isinstance(exc, IntegrityFailure):
            raise
        raise IntegrityFailure(damaged) from None
    views_damage = _views_damage(ledger, repair, report.repaired)
    unresolved = (
        views_damage
        + [s for s in report.bad_snapshots if f"snapshot {s}" not in report.repaired]
        + report.damaged_intents
        + report.missing_values
        + [e for e in report.orphans if e not in report.repaired]
        + [e for e in report.leftovers if e not in report.repaired]
    )
    if output is Output.json:
        runtime.emit_json(
            {
                "host": ledger.host,
                "vault": report.vault,
                "checked_versions": report.checked_versions,
                "missing_values": report.missing_values,
                "orphans": report.orphans,
                "leftovers": report.leftovers,
                "repaired": report.repaired,
                "on_other_hosts": report.on_other_hosts,
                "bad_snapshots": report.bad_snapshots,
                "damaged_intents": report.damaged_intents,
                "damaged_views": views_damage,
                "in_progress": report.in_progress,
                "keychain_listed": report.keychain_listed,
                "healthy": not unresolved,
            }
        )
    else:
        print(
            f"host {ledger.host}, keychain {report.vault}: "
            f"{report.checked_versions} versions checked"
        )
        for label, items in (
            ("damaged views cache", views_damage),
            ("bad snapshot", report.bad_snapshots),
            ("damaged pending-write intent", report.damaged_intents),
            ("missing value", report.missing_values),
            ("orphaned entry", report.orphans),
            ("leftover value", report.leftovers),
            ("repaired", report.repaired),
        ):
            for item in items:
                print(f"  {label}: {item}")
        for item in report.in_progress:
            print(f"  write in progress (another process, not repaired): {item}")
        for other, count in sorted(report.on_other_hosts.items()):
            print(f"  on other hosts: {count} version(s) on {other} (checked there, not here)")
        if not report.keychain_listed:
            print(
                "  this keychain cannot list its entries: orphans were looked for among "
                "pending writes only"
            )
        print("healthy" if not unresolved else f"{len(unresolved)} problem(s) remain")
    if unresolved:
        raise IntegrityFailure(f"{len(unresolved)} inconsistencies; see above")


def _views_damage(ledger: SecretsLedger, repair: bool, repaired: list[str]) -> list[str]:
    """This host's views cache, read whole: its damage (a command would rebuild it from the
    log, with a warning), unless `repair` removes it (then it is listed in `repaired`)."""
    from projections.views_ahead import of_file
    from projections.views_schema import damage, discard

    path = ledger.home / ledger.views_file
    problem = damage(path)
    if problem is None:
        # An intact file can still claim more than the log holds (projections/views_ahead.py).
        ahead = of_file(ledger, path)
        problem = None if ahead is None else f"claims more than the ledger's log holds: {ahead}"
    if problem is None:
        return []
    if repair:
        discard(path)
        repaired.append(f"views cache {path} (removed: the next command rebuilds it)")
        return []
    return [f"{path}: {problem}"]
