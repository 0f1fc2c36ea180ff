"""`secrets ledger ...`: the event store itself: copy it elsewhere, share its fingerprint key,
change its retention."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from commands import runtime
from commands.options import DatabaseUrlOpt, HomeOpt, Output, OutputOpt

ledger_app = typer.Typer(
    help=(
        "The event store: copy it between SQLite and PostgreSQL, share its fingerprint key, "
        "change its retention."
    ),
    no_args_is_help=True,
)


@ledger_app.command("copy")
def copy(
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help=(
                "Where to copy: postgresql://user@host:port/db, sqlite:///dir/ledger.sqlite or "
                "a home directory. Must hold no events yet."
            ),
        ),
    ],
    home: HomeOpt = None,
    database_url: DatabaseUrlOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Copy every stored event (positions, timestamps, hash chain) to another store.

    The source is verified first; the copy is verified after and must end on the same chain
    head. Values are not copied: they stay in each host's keychain.

    Example: secrets ledger copy --to postgresql://ledger@db.internal:5432/secrets
    """
    from ledger.access.policy import Permission
    from ledger.errors import BadConfiguration
    from ledger.store.config_postgres import open_postgres_ledger
    from ledger.store.copy import CopyableRecorder, copy_history
    from ledger.store.database_url import PostgresLocation, parse

    source = runtime.open_ledger(home)
    source.authorize(runtime.credential(source), Permission.ADMIN, "ledger copy")
    location = parse(to)
    if isinstance(location, PostgresLocation):
        if source.location == location.redacted:
            raise BadConfiguration("the target is the ledger being copied")
        # A long copy streams from the source inside one target transaction.
        target = open_postgres_ledger(
            location, source.home, create=True, backend=None, idle_timeout=600
        )
        described = location.redacted
    else:
        from ledger.store.config import DATABASE_FILE
        from ledger.store.opening import open_ledger

        if not source.location and location.home == source.home.resolve():
            raise BadConfiguration("the target is the ledger being copied")
        target = open_ledger(location.home, create=True, database_url=f"sqlite://{location.home}")
        described = str(location.home / DATABASE_FILE)
    source_recorder: CopyableRecorder = source.recorder  # type: ignore[assignment]
    target_recorder: CopyableRecorder = target.recorder  # type: ignore[assignment]
    report = copy_history(source_recorder, target_recorder)
    target.close()
    if output is Output.json:
        runtime.emit_json(
            {
                "target": described,
                "events": report.events,
                "snapshots": report.snapshots,
                "last_position": report.last_position,
                "chain_head": report.head.hex(),
                "verified": True,
            }
        )
        return
    print(
        f"copied {report.events} events (up to position {report.last_position}) and "
        f"{report.snapshots} snapshots to {described}; chain verified, head "
        f"{report.head.hex()[:16]}"
    )
    runtime.info(
        "values were not copied: they stay in each host's keychain. Log in again against "
        "the new store (`secrets auth login`)."
    )


@ledger_app.command("export-key")
def export_key(home: HomeOpt = None, database_url: DatabaseUrlOpt = None) -> None:
    """Print this ledger's fingerprint key (one line) for another host's `import-key`.

    The key lets a host compute value fingerprints (needed to set or rotate); it reveals no
    value. Pass it only over a channel you would trust with a password. The export is
    recorded. Senior-engineers only.

    Example: secrets ledger export-key > /dev/tty   (then paste into import-key elsewhere)
    """
    ledger = runtime.open_ledger(home)
    exported = ledger.export_key(runtime.credential(ledger))
    runtime.info("fingerprint key follows (treat it like a password; it reveals no secret value):")
    sys.stdout.write(exported + "\n")


@ledger_app.command("import-key")
def import_key(
    key_stdin: Annotated[
        bool,
        typer.Option("--key-stdin", help="Read the exported key from standard input."),
    ] = False,
    home: HomeOpt = None,
    database_url: DatabaseUrlOpt = None,
) -> None:
    """Store the ledger's fingerprint key (from `export-key` on another host) in this host's
    keychain, after checking it is this ledger's key. The import is recorded.

    Example: secrets ledger import-key --key-stdin < key.txt
    """
    import getpass

    from commands.value_input import UsageProblem

    if key_stdin:
        text = sys.stdin.readline()
    elif sys.stdin.isatty():
        text = getpass.getpass("Exported fingerprint key: ")
    else:
        raise UsageProblem("give the key with --key-stdin (it is never taken as an argument)")
    ledger = runtime.open_ledger(home)
    stored = ledger.import_key(runtime.credential(ledger), text)
    if stored:
        print(f"fingerprint key stored in this host's keychain ({ledger.vault.description})")
    else:
        print("this keychain already holds this ledger's fingerprint key; nothing changed")


@ledger_app.command("retention")
def retention(
    versions: Annotated[
        int, typer.Argument(help="How many versions of each secret keep their values (>= 1).")
    ],
    home: HomeOpt = None,
    database_url: DatabaseUrlOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Change how many versions keep their values (set by `init --retention`). Recorded
    (HBSE-014); senior-engineers only, a refusal is recorded as a denial. Each secret's next
    write prunes the values beyond the new figure; the change itself prunes nothing.

    Example: secrets ledger retention 5
    """
    from ledger.services.retention import change_retention

    ledger = runtime.open_ledger(home)
    before = change_retention(ledger, runtime.credential(ledger), versions)
    if output is Output.json:
        runtime.emit_json({"retention": versions, "previous": before})
        return
    if before == versions:
        print(f"retention is already {versions}; nothing changed")
    else:
        print(f"retention {before} -> {versions}")
