"""`secrets audit replay`, `diff`, `who-can` and `hash`: the ledger as it was at any point."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from commands import runtime
from commands.audit.common import audit_app, shown, when_option
from commands.options import CatalogueOpt, HomeOpt, Output, OutputOpt

if TYPE_CHECKING:
    from datetime import datetime

    from ledger.application import SecretsLedger


# -- the past -----------------------------------------------------------------------------


def _one_cut(at: str | None, position: int | None) -> datetime | None:
    """--at or --position, exactly one; the --at time parsed."""
    from commands.value_input import UsageProblem

    if (at is None) == (position is None):
        raise UsageProblem("give exactly one of --at and --position")
    return when_option(at, "--at")


def _replay_state(
    ledger: Any, views: Any, at: datetime | None, position: int | None
) -> tuple[Any, list[int], int]:
    """The replayed snapshot, the positions left out of it (`_left_out`) and its cut."""
    from projections.replay import Replayer, snapshot
    from projections.timefmt import iso

    if at is not None:
        position = views.position_at(iso(at))
    assert position is not None
    if position > views.position():
        from commands.value_input import UsageProblem

        raise UsageProblem(
            f"--position {position} is past the last event of the log ({views.position()})"
        )
    replayer = Replayer(ledger, views.db, open_vault=True)
    state = replayer.at_position(position)
    return snapshot(state, at), _left_out(views, replayer, position), position


def _left_out(views: Any, replayer: Any, upto: int) -> list[int]:
    """Positions up to `upto` whose event could not be decoded, by the views when they
    applied it or by this replay: missing from the answer (JSON `left_out`)."""
    return sorted(set(replayer.skipped) | set(views.unreadable(upto)))


def _fail_if_left_out(bad: list[int], upto: int) -> None:
    """Once the answer is shown: exit 6 if events are missing from it, so that it does not
    pass for a clean one."""
    from ledger.errors import IntegrityFailure

    if bad:
        shown = ", ".join(str(p) for p in bad[:5]) + (", ..." if len(bad) > 5 else "")
        raise IntegrityFailure(
            f"{len(bad)} event(s) up to position {upto} cannot be decoded and are left out "
            f"of this answer (position {shown}); run `secrets audit verify`"
        )


@audit_app.command("replay")
def replay(
    at: Annotated[
        str | None, typer.Option("--at", help="As of this time (ISO 8601, or 24h, 7d ago).")
    ] = None,
    position: Annotated[
        int | None, typer.Option("--position", min=0, help="As of this log position.")
    ] = None,
    catalogue: CatalogueOpt = None,
    home: HomeOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Show the whole ledger as it was: secrets with their compliance then, operators and roles,
    open sessions.

    "As of T" takes every event up to the last position stamped at or before T (timestamps
    come from each writer's clock; positions are the ledger's own order). Compliance is the
    rotation policy of `secrets rotate-status`, evaluated at T (at --position: at that event's
    time).

    Example: secrets audit replay --at 2026-01-31T00:00:00Z
    """
    from ledger.access.policy import Permission
    from ledger.rotation.catalogue import load_catalogue
    from projections.replay import with_compliance

    when = _one_cut(at, position)
    spec = load_catalogue(catalogue)
    ledger = runtime.open_ledger(home)
    ledger.authorize(runtime.credential(ledger), Permission.AUDIT, "audit replay")
    views = runtime.views(ledger)
    replayed, left_out, cut = _replay_state(ledger, views, when, position)
    doc = with_compliance(replayed, ledger, spec)
    if output is Output.json:
        runtime.emit_json({**doc, "left_out": left_out} if left_out else doc)
    else:
        _print_replay(doc)
    _fail_if_left_out(left_out, cut)


def _print_replay(doc: dict[str, Any]) -> None:
    print(f"As of position {doc['position']} ({doc['timestamp'] or 'empty ledger'})")
    print()
    print(
        runtime.table(
            [
                "ENVIRONMENT",
                "SERVICE",
                "NAME",
                "VERSION",
                "FINGERPRINT",
                "LAST ROTATION",
                "STATUS",
                "COMPLIANCE",
                "DUE",
            ],
            [
                [
                    s["environment"],
                    s["service"],
                    s["name"],
                    f"v{s['current_version']}",
                    f"[{s['fingerprint']}]",
                    s["last_rotation"] or "",
                    s["status"],
                    s["compliance"],
                    s["rotation_due"] or "-",
                ]
                for s in doc["secrets"]
            ],
        )
    )
    print()
    print(
        runtime.table(
            ["OPERATOR", "ROLE"], [[o["name"], o["role"] or "(revoked)"] for o in doc["operators"]]
        )
    )
    print()
    print(
        runtime.table(
            ["SESSION OF", "SESSION", "OPENED", "EXPIRES", "HOST"],
            [
                [s["operator"], s["session"], s["opened_at"], s["expires_at"], s["host"]]
                for s in doc["sessions"]
            ],
        )
    )


@audit_app.command("diff")
def diff(
    since: Annotated[str, typer.Option("--from", help="Earlier time (ISO 8601 or 7d ago).")],
    to: Annotated[str, typer.Option("--to", help="Later time (ISO 8601 or 1h ago).")],
    home: HomeOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """What changed between two times: secrets added, set, rotated, rolled back, deleted,
    restored, destroyed; roles granted and revoked; access denied (HBSE-006); sessions.

    Example: secrets audit diff --from 2026-01-01 --to 2026-02-01
    """
    from commands.value_input import UsageProblem
    from ledger.access.policy import Permission
    from projections.replay import Replayer, snapshot, window
    from projections.replay import diff as compare
    from projections.timefmt import iso

    start, end = when_option(since, "--from"), when_option(to, "--to")
    assert start is not None and end is not None
    if end < start:
        raise UsageProblem("--to is before --from")
    ledger = runtime.open_ledger(home)
    ledger.authorize(runtime.credential(ledger), Permission.AUDIT, "audit diff")
    views = runtime.views(ledger)
    replayer = Replayer(ledger, views.db, open_vault=True)
    state = replayer.at_position(views.position_at(iso(start)))
    before = snapshot(state, start)
    cut = views.position_at(iso(end))
    between = window(replayer, state, cut)
    doc = compare(before, snapshot(state, end), between)
    left_out = _left_out(views, replayer, cut)
    if output is Output.json:
        runtime.emit_json({**doc, "left_out": left_out} if left_out else doc)
    else:
        _print_diff(doc)
    _fail_if_left_out(left_out, cut)


def _print_diff(doc: dict[str, Any]) -> None:
    print(f"from position {doc['from']['position']} to {doc['to']['position']}")
    for s in doc["secrets"]:
        happened = ", ".join(
            f"{e['change']} v{e['version']}" if "version" in e else e["change"] for e in s["events"]
        )
        fields = ", ".join(
            f"{k} {shown(v['from'])} -> {shown(v['to'])}" for k, v in s["fields"].items()
        )
        print(
            f"  secret   {s['secret']}: {happened or s['change']}"
            + (f"; {fields}" if fields else "")
        )
    for r in doc["role_changes"]:
        print(f"  role     {r['operator']}: {r['change']} {r['role'] or '-'} (by {r['by']})")
    for d in doc["denials"]:
        target = f" {d['secret']}" if d["secret"] else ""
        print(f"  denied   {d['operator']}: {d['action']}{target} ({d['reason']})")
    for s in doc["sessions_opened"]:
        print(f"  login    {s['operator']} session {s['session']}")
    for s in doc["sessions_ended"]:
        print(f"  logout   {s['operator']} session {s['session']} (closed or expired)")
    sections = (
        "secrets",
        "operators",
        "role_changes",
        "denials",
        "sessions_opened",
        "sessions_ended",
    )
    if not any(doc[k] for k in sections):
        print("  no changes")


@audit_app.command("who-can")
def who_can(
    service: Annotated[str, typer.Option("--service", "-s", help="Service, e.g. nexus.")],
    name: Annotated[str, typer.Option("--name", "-n", help="Key name.")],
    environment: Annotated[
        str,
        typer.Option(
            "--environment", "-e", envvar="SECRETS_LEDGER_ENVIRONMENT", help="Environment."
        ),
    ] = "default",
    at: Annotated[str | None, typer.Option("--at", help="As of this time (default: now).")] = None,
    home: HomeOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Who could read or change a secret, now or at a past time (roles as recorded then).

    Example: secrets audit who-can --service nexus --name mcp.bun.apiKey --at 2026-01-15
    """
    from ledger.access.policy import Permission
    from projections.replay import who_can as holders

    when = when_option(at, "--at")
    ledger = runtime.open_ledger(home)
    ledger.authorize(runtime.credential(ledger), Permission.AUDIT, "audit who-can")
    views = runtime.views(ledger)
    position = None if when is not None else views.position()
    replayed, left_out, cut = _replay_state(ledger, views, when, position)
    doc = holders(replayed, environment, service, name)
    if not doc["exists"] and not left_out:
        from ledger.errors import NotFound

        raise NotFound(f"{doc['secret']} does not exist as of position {doc['position']}")
    if output is Output.json:
        runtime.emit_json({**doc, "left_out": left_out} if left_out else doc)
    else:
        state = doc["status"] or "does not exist"
        print(f"{doc['secret']} as of position {doc['position']}: {state}")
        print(
            runtime.table(
                ["OPERATOR", "ROLE", "CAN"],
                [[o["operator"], o["role"], ", ".join(o["can"])] for o in doc["operators"]],
            )
        )
    _fail_if_left_out(left_out, cut)


@audit_app.command("hash")
def hash_value(
    service: Annotated[
        str | None, typer.Option("--service", "-s", help="Service, e.g. nexus.")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", "-n", help="Key name.")] = None,
    environment: Annotated[
        str,
        typer.Option(
            "--environment", "-e", envvar="SECRETS_LEDGER_ENVIRONMENT", help="Environment."
        ),
    ] = "default",
    home: HomeOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Print the fingerprint a value (read from stdin) would have, and which version has it.

    Without --service/--name, search the whole ledger: every secret and version (pruned and
    destroyed ones too) that ever held the value. Exit 0 either way; the answer is the list.
    Needs the keychain (the fingerprint key lives there) and read access.

    Examples: printf %s "$CANDIDATE" | secrets audit hash --service nexus --name mcp.bun.apiKey;
    printf %s "$LEAKED" | secrets audit hash
    """
    from commands.value_input import UsageProblem, read_value
    from ledger.errors import NotFound

    ledger = runtime.open_ledger(home)
    if service is None and name is None:
        _hash_everywhere(ledger, read_value(None, None, True, prompt="Value"), output)
        return
    if service is None or name is None:
        raise UsageProblem("give both --service and --name, or neither to search every secret")
    addr = runtime.address(environment, service, name)
    value = read_value(None, None, True, prompt="Value")
    cred = runtime.credential(ledger)
    fingerprint = ledger.fingerprint_for(cred, addr, value)
    try:
        recorded = list(ledger.history(cred, addr).versions.values())
    except NotFound:
        recorded = []
    matches = sorted(v.number for v in recorded if v.fingerprint == fingerprint)
    if output is Output.json:
        runtime.emit_json(
            {"secret": str(addr), "fingerprint": fingerprint[:12], "matching_versions": matches}
        )
        return
    found = ", ".join(f"v{n}" for n in matches) if matches else "no recorded version"
    print(f"[{fingerprint[:12]}] matches {found}")


def _hash_everywhere(ledger: SecretsLedger, value: str, output: Output) -> None:
    from ledger.services.hash_search import search_ledger

    searched, matches = search_ledger(ledger, runtime.credential(ledger), value)
    if output is Output.json:
        runtime.emit_json(
            {
                "searched_secrets": searched,
                "matches": [
                    {
                        "secret": str(m.address),
                        "fingerprint": m.fingerprint[:12],
                        "matching_versions": m.versions,
                    }
                    for m in matches
                ],
            }
        )
        return
    if not matches:
        print(f"no recorded version of the {searched} secrets held this value")
        return
    for m in matches:
        print(f"{m.address} [{m.fingerprint[:12]}] " + ", ".join(f"v{n}" for n in m.versions))
