"""`secrets audit verify`, `checkpoint`, `pubkey` and `export`: the history checked, signed and
handed to an auditor."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from commands import runtime
from commands.audit.common import audit_app
from commands.options import HomeOpt, Output, OutputOpt

if TYPE_CHECKING:
    from ledger.application import SecretsLedger
    from ledger.integrity.verify import IntegrityReport


# -- verify, checkpoints ------------------------------------------------------------------


def _pinned_key(pubkey: Path | None) -> str | None:
    from commands.audit.bundle_files import read_key_option

    if pubkey is None:
        return None
    return _key_from_pem(read_key_option(pubkey, "--pubkey"), f"--pubkey {pubkey}:")


def _key_from_pem(pem: bytes, label: str) -> str:
    from cryptography.exceptions import UnsupportedAlgorithm

    from commands.value_input import UsageProblem
    from ledger.checkpoint import public_hex_from_pem

    try:
        return public_hex_from_pem(pem)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise UsageProblem(f"{label} not a readable Ed25519 PEM key ({exc})") from None


def _verify_report(report: IntegrityReport, alarm: bool | None, output: Output) -> None:
    from ledger.errors import IntegrityFailure

    fault = report.fault
    if output is Output.json:
        runtime.emit_json(
            {
                "ok": fault is None,
                "events_checked": report.events_checked,
                "events_valid": report.events_valid,
                "checkpoints_checked": report.checkpoints_checked,
                "checkpoints_valid": report.checkpoints_valid,
                "snapshots_checked": report.snapshots_checked,
                "snapshots_valid": report.snapshots_valid,
                "last_position": report.last_position,
                "head": report.head.hex(),
                "public_key": report.public_key,
                "fault": None
                if fault is None
                else {"position": fault.position, "kind": fault.kind, "detail": fault.detail},
                "alarm_recorded": alarm,
            }
        )
    else:
        print(
            f"{report.events_valid}/{report.events_checked} events valid, "
            f"{report.checkpoints_valid}/{report.checkpoints_checked} checkpoints valid, "
            f"{report.snapshots_valid}/{report.snapshots_checked} snapshots valid"
        )
        if fault is not None and fault.kind == "snapshot":
            # A snapshot is a cache row outside the chain: it has no position of its own.
            print(f"FAULT snapshot: {fault.detail}")
        elif fault is not None:
            print(f"FAULT {fault.kind} at position {fault.position}: {fault.detail}")
            if report.events_valid < report.events_checked:
                # The counts above stop there too: they read like a total otherwise.
                print(
                    f"the walk stops at the first fault: events and checkpoints after "
                    f"position {fault.position} were not checked"
                )
            if alarm:
                print("an integrity alarm (HBSE-013) was recorded in the ledger")
    if fault is not None:
        if alarm is False:
            runtime.info("warning: the integrity alarm could not be recorded in the ledger")
        if fault.kind == "snapshot":
            raise IntegrityFailure(
                "the event history verifies, but a stored snapshot does not authenticate: "
                f"{fault.detail}"
            )
        raise IntegrityFailure(f"history is not intact: {fault.kind} at position {fault.position}")


@audit_app.command("verify")
def verify(
    bundle: Annotated[
        Path | None,
        typer.Option(
            "--bundle",
            help="Verify an evidence export (from `secrets audit export --out DIR`) instead "
            "of the ledger; needs no session or keychain.",
        ),
    ] = None,
    pubkey: Annotated[
        Path | None,
        typer.Option("--pubkey", help="Require checkpoints signed by this PEM public key."),
    ] = None,
    home: HomeOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Check the hash chain, signed checkpoints and stored snapshots (exit 6 on a fault).

    Prints `N/N events valid, M/M checkpoints valid, S/S snapshots valid`; on a fault, the
    first bad position and its kind (edited, deleted, inserted, reordered, truncated,
    signature, snapshot), and records an integrity alarm (HBSE-013) in the ledger.

    Example: secrets audit verify --pubkey ledger-checkpoints.pem
    """
    pinned = _pinned_key(pubkey)
    if bundle is not None:
        _verify_bundle(bundle, pinned, output)
        return
    from projections.views import Views

    ledger = runtime.open_ledger(home)
    cred = runtime.credential(ledger)
    views = Views(ledger)
    try:
        # Not caught up first: the position the views reached before hints at how far the
        # log went, which a cut-off tail can no longer show.
        seen = views.position()
    finally:
        views.close()
    from projections.event_reader import undecodable_check

    # The views' position is a cache row any writer of views.sqlite can set: not a witness
    # the ledger is judged by (one UPDATE made every verify report the log `truncated` and
    # record HBSE-013). The keychain's witnesses are; a views cache ahead of the log is
    # only said, as what it may mean.
    report, alarm = ledger.audit_verify(cred, pinned, [], undecodable_check(ledger.mapper))
    if seen > report.last_position:
        runtime.info(
            f"warning: the views cache says the log reached position {seen} but it ends at "
            f"{report.last_position}: the log's tail may have been cut, or the cache edited "
            "(`secrets projections rebuild` rebuilds it from the log)"
        )
    _verify_report(report, alarm, output)


def _verify_bundle(bundle: Path, pinned: str | None, output: Output) -> None:
    import sqlite3
    import tempfile

    from eventsourcing.persistence import PersistenceError

    from commands.audit.bundle_files import (
        NOTE_LIMIT,
        PEM_LIMIT,
        copy_database,
        read_bundle_file,
    )
    from commands.value_input import UsageProblem
    from ledger.checkpoint import Witness
    from ledger.errors import IntegrityFailure, LedgerError
    from ledger.store.opening import open_ledger

    if not (bundle / "ledger.sqlite").is_file() and not (bundle / "ledger.sqlite").is_symlink():
        raise UsageProblem(f"--bundle {bundle}: no ledger.sqlite there")
    own = bundle / "pubkey.pem"
    auditor_pinned = pinned is not None
    own_key = None
    own_pem = read_bundle_file(bundle, "pubkey.pem", PEM_LIMIT)
    if own_pem is not None:
        try:
            own_key = _key_from_pem(own_pem, "the bundle's pubkey.pem:")
        except UsageProblem:
            if not auditor_pinned:
                raise  # the auditor's key decides otherwise: the bundle's does not matter
    if auditor_pinned and own_key is not None and own_key != pinned:
        runtime.info(f"warning: {own} is not the key given with --pubkey: ignored")
    if pinned is None:
        pinned = own_key
    witnesses: list[Witness] = []
    note = bundle / "checkpoint.json"
    found = None
    raw_note = read_bundle_file(bundle, "checkpoint.json", NOTE_LIMIT)
    if raw_note is not None:
        text = raw_note.decode("utf-8", "replace")  # not UTF-8: not a witness
        found = Witness.loads("the bundle's checkpoint.json", text)
    if found is not None:
        witnesses.append(found)
    else:
        # Without the note nothing shows a tail cut off after the last checkpoint: say so.
        runtime.info(
            f"warning: {note} is missing or unreadable: a history cut off after its last "
            "checkpoint would not be detected"
        )
    with tempfile.TemporaryDirectory(prefix="secrets-bundle-") as scratch:
        # Evidence is never written to: verify a private copy (opening a store may create
        # tables or a WAL file).
        copy_database(bundle, Path(scratch))
        try:
            # Explicitly this copy: a configured SECRETS_LEDGER_DATABASE_URL (a shared ledger)
            # must never be verified in place of the evidence.
            ledger = open_ledger(Path(scratch), private=False, database_url=f"sqlite://{scratch}")
        except LedgerError as exc:
            # Name the evidence, not the private copy.
            raise type(exc)(str(exc).replace(str(Path(scratch)), str(bundle))) from None
        ledger.checkpoint_every = 0
        try:
            ledger.check_pages()
            from projections.event_reader import undecodable_check

            report = ledger.verify_history(
                pinned, witnesses, decodes=undecodable_check(ledger.mapper)
            )
            if report.ok:
                report = ledger.with_snapshot_check(report)
        except (PersistenceError, sqlite3.DatabaseError) as exc:
            # Damage the header check and quick_check let through (text that is not UTF-8, a
            # page that reads but decodes wrongly): the evidence is not intact.
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise IntegrityFailure(f"{bundle / 'ledger.sqlite'} is damaged: {first}") from None
        except IntegrityFailure as exc:
            raise IntegrityFailure(str(exc).replace(str(Path(scratch)), str(bundle))) from None
        finally:
            ledger.close()
    if report.events_checked == 0:
        # An export always holds the ledger's first events and a checkpoint.
        raise IntegrityFailure(f"{bundle / 'ledger.sqlite'} holds no events: not an export")
    if report.ok and report.checkpoints_valid == 0:
        # An export signs a checkpoint; without one nothing vouches for the chain, which
        # anyone can recompute over edited events (whatever key is pinned).
        raise IntegrityFailure(f"{bundle / 'ledger.sqlite'} holds no signed checkpoint")
    if not auditor_pinned:
        _say_unpinned(report.public_key, own_key is not None)
    _verify_report(report, None, output)


def _say_unpinned(key: str | None, from_pem: bool) -> None:
    """A bundle checked against a key it brings itself proves only that whoever made it
    signed it: say so, and which key that was, every time."""
    from ledger.checkpoint import key_fingerprint

    if key is None:
        return
    whose = "the bundle's own pubkey.pem" if from_pem else "the key its first checkpoint names"
    runtime.info(
        f"warning: checkpoints checked against {whose}, fingerprint {key_fingerprint(key)}: "
        "the key is not pinned, so this shows only that whoever made the bundle signed it; "
        "pin the ledger's key with --pubkey FILE (`secrets audit pubkey` on the ledger "
        "prints it and its fingerprint)"
    )


@audit_app.command("checkpoint")
def checkpoint(
    reset_witness: Annotated[
        bool,
        typer.Option(
            "--reset-witness",
            help="After restoring a backup: let the keychain's checkpoint note follow the "
            "restored (shorter) log, and forget what this host had seen of the ledger (its "
            "seen heads). Senior-engineer only; recorded as an integrity alarm.",
        ),
    ] = False,
    home: HomeOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Sign the current chain head with the ledger's checkpoint key (HBSE-015).

    Checkpoints are also written automatically every 1000 events
    (SECRETS_LEDGER_CHECKPOINT_EVERY; 0 turns that off).

    Example: secrets audit checkpoint
    """
    ledger = runtime.open_ledger(home)
    at, signed = ledger.checkpoint(runtime.credential(ledger), reset_witness=reset_witness)
    if output is Output.json:
        runtime.emit_json(
            {
                "sequence": signed.sequence,
                "position": signed.position,
                "head": signed.head,
                "recorded_at": at,
                "public_key": signed.public_key,
                "signature": signed.signature,
            }
        )
        return
    print(
        f"checkpoint #{signed.sequence} signs position {signed.position} "
        f"(head {signed.head[:16]}), recorded at {at}"
    )


@audit_app.command("pubkey")
def pubkey(home: HomeOpt = None) -> None:
    """Print the checkpoint public key (PEM), to pin with `audit verify --pubkey`.

    Example: secrets audit pubkey > ledger-checkpoints.pem
    """
    from ledger.checkpoint import key_fingerprint, public_pem

    ledger = runtime.open_ledger(home)
    key = ledger.checkpoint_public_key(runtime.credential(ledger))
    sys.stdout.write(public_pem(key))
    # What `audit verify --bundle` shows of the key it checked: compare it with this.
    runtime.info(f"fingerprint {key_fingerprint(key)}")


@audit_app.command("export")
def export(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the evidence into.")],
    home: HomeOpt = None,
) -> None:
    """Export evidence: events (no values), hash chain, checkpoints and the public key.

    Signs a checkpoint now and writes ledger.sqlite (a consistent copy), pubkey.pem and
    checkpoint.json into DIR, a new or empty directory. An auditor checks it offline with
    `secrets audit verify --bundle DIR`.

    Example: secrets audit export --out /media/audit/2026-q1
    """
    import shutil
    import tempfile

    from commands.audit.bundle_files import new_output_directory, place_file, write_file
    from ledger.checkpoint import Witness, public_pem

    ledger = runtime.open_ledger(home)
    cred = runtime.credential(ledger)
    # Checked before signing (a refused directory leaves no checkpoint behind), made after
    # (a refused operator leaves no directory behind).
    new_output_directory(out, create=False)
    at, signed = ledger.checkpoint(cred, action="audit export")
    new_output_directory(out)
    # Staged in a directory of our own (0700) and then created new in `out`: whoever can
    # write `out` cannot make the copy go through a link they planted (docs/security.md).
    work = Path(tempfile.mkdtemp(prefix=".export-", dir=out))
    try:
        staged = work / "bundle.sqlite"
        if ledger.location:
            _copy_shared_ledger(ledger, work, staged)
        else:
            _backup(ledger.home / "ledger.sqlite", staged)
        place_file(staged, out, "ledger.sqlite", 0o600)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_file(out, "pubkey.pem", public_pem(signed.public_key).encode(), 0o644)
    note = Witness("bundle", at, signed.signature).dumps() + "\n"
    write_file(out, "checkpoint.json", note.encode(), 0o644)
    print(f"evidence exported to {out} (checkpoint #{signed.sequence} at {at})")


def _backup(source_path: Path, target: Path) -> None:
    """A consistent copy of a SQLite ledger file, taken while writers may be active."""
    import sqlite3

    source = sqlite3.connect(source_path)
    copy = sqlite3.connect(target)
    try:
        source.backup(copy)
    finally:
        copy.close()
        source.close()


def _copy_shared_ledger(ledger: SecretsLedger, out: Path, target: Path) -> None:
    """A bundle is one SQLite file: a PostgreSQL ledger's events, positions and chain are
    copied into one (as `secrets ledger copy` does, verified before and after)."""
    import shutil
    import tempfile

    from ledger.store.copy import CopyableRecorder, copy_history
    from ledger.store.opening import open_ledger

    work = Path(tempfile.mkdtemp(prefix=".export-", dir=out))
    try:
        staged = open_ledger(work, create=True, database_url=f"sqlite://{work}")
        try:
            source: CopyableRecorder = ledger.recorder  # type: ignore[assignment]
            copy_history(source, staged.recorder)  # type: ignore[arg-type]
        finally:
            staged.close()
        _backup(work / "ledger.sqlite", target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@audit_app.command("bundle", hidden=True, deprecated=True)
def bundle(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the evidence into.")],
    home: HomeOpt = None,
) -> None:
    """Deprecated name of `secrets audit export` (kept so existing scripts keep working).

    Example: secrets audit bundle --out /media/audit/2026-q1  (now: secrets audit export)
    """
    export(out=out, home=home)
