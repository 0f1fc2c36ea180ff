"""`secrets auth`: operators, roles, sessions."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from commands import runtime
from commands.options import DatabaseUrlOpt, HomeOpt, Output, OutputOpt

if TYPE_CHECKING:
    from datetime import timedelta

auth_app = typer.Typer(help="Operators, roles and sessions.", no_args_is_help=True)

OperatorOpt = Annotated[str, typer.Option("--operator", help="Operator name.")]


@auth_app.command("grant")
def grant(
    operator: OperatorOpt,
    role: Annotated[str, typer.Option("--role", help="senior-engineer, engineer or analyst.")],
    home: HomeOpt = None,
    database_url: DatabaseUrlOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Create an operator or change its role; prints a new token once (senior-engineer only).

    Example: secrets auth grant --operator bob --role analyst
    """
    ledger = runtime.open_ledger(home)
    issued = ledger.grant(runtime.credential(ledger), operator, role)
    if output is Output.json:
        runtime.emit_json({"operator": operator, "role": role, "token": issued.token})
        return
    runtime.info(f"{operator} is now {role}. Token (shown once; hand it over securely):")
    print(issued.token)


@auth_app.command("revoke")
def revoke(
    operator: OperatorOpt, home: HomeOpt = None, database_url: DatabaseUrlOpt = None
) -> None:
    """Revoke an operator: ends all its sessions and tokens (senior-engineer only).

    Example: secrets auth revoke --operator bob
    """
    ledger = runtime.open_ledger(home)
    ledger.revoke(runtime.credential(ledger), operator)
    print(f"{operator} revoked")


@auth_app.command("login")
def login(
    operator: OperatorOpt,
    token_stdin: Annotated[
        bool, typer.Option("--token-stdin", help="Read the token from standard input.")
    ] = False,
    ttl: Annotated[
        str, typer.Option("--ttl", help="Session lifetime, e.g. 8h, 30m, 1d (max 7d).")
    ] = "8h",
    home: HomeOpt = None,
    database_url: DatabaseUrlOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Open a session for OPERATOR with its token (hidden prompt, or --token-stdin).

    Example: secrets auth login --operator alice
    """
    from commands.value_input import UsageProblem
    from ledger.access.session_file import save, session_path
    from ledger.errors import ValidationFailed
    from projections.timefmt import iso

    lifetime = _parse_ttl(ttl)
    # The rule for missing input (docs/cli.md, Exit codes): no source is a usage error (2),
    # a source that gives nothing is refused input (5); neither is a login attempt.
    if token_stdin:
        # Bytes that are not UTF-8 reach the ledger as surrogates: a refused (and recorded)
        # login, not a decoding error.
        token = sys.stdin.buffer.readline().decode("utf-8", "surrogateescape").strip()
        source = "read from stdin"
    elif sys.stdin.isatty():
        import getpass

        token = getpass.getpass("Token: ").strip()
        source = "entered"
    else:
        raise UsageProblem("no token: give it with --token-stdin or run on a terminal")
    if not token:
        raise ValidationFailed(
            "token",
            f"the token {source} is empty: give the operator's token "
            "(printed once by `secrets init` or `secrets auth grant`)",
        )
    ledger = runtime.open_ledger(home)
    runtime.claim_operator(operator)
    if not ledger.is_initialized():
        from ledger.errors import NotInitialized

        raise NotInitialized(
            f"no ledger at {ledger.location or ledger.home} yet; run `secrets init`"
        )
    session = ledger.login(operator, token, lifetime)
    save(session_path(ledger.home), session)
    if output is Output.json:
        runtime.emit_json(
            {
                "operator": session.operator,
                "role": session.role,
                "expires_at": iso(session.expires_at),
            }
        )
        return
    print(f"logged in as {session.operator} ({session.role}) until {iso(session.expires_at)}")


def _parse_ttl(text: str) -> timedelta:
    import re
    from datetime import timedelta

    from ledger.errors import ValidationFailed

    match = re.fullmatch(r"\s*(\d{1,6})\s*([smhd])\s*", text)
    if not match:
        raise ValidationFailed("ttl", f"--ttl {text[:20]!r}: use a number and s, m, h or d")
    amount, unit = int(match.group(1)), match.group(2)
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit] * amount
    return timedelta(seconds=seconds)


@auth_app.command("logout")
def logout(home: HomeOpt = None, database_url: DatabaseUrlOpt = None) -> None:
    """Close this host's session.

    Example: secrets auth logout
    """
    from ledger.access.session_file import remove, session_path

    ledger = runtime.open_ledger(home)
    closed = ledger.logout(runtime.credential(ledger))
    remove(session_path(ledger.home))
    print("logged out" if closed else "no active session")


@auth_app.command("status")
def status(
    home: HomeOpt = None, database_url: DatabaseUrlOpt = None, output: OutputOpt = Output.table
) -> None:
    """Show the session's operator, role, expiry and what the role allows (exit 4 if none).

    Example: secrets auth status
    """
    from commands.exit_codes import ExitCode
    from ledger.access.policy import POLICY
    from projections.timefmt import iso

    ledger = runtime.open_ledger(home)
    principal, reason = ledger.whoami(runtime.credential(ledger))
    if principal is None:
        if output is Output.json:
            runtime.emit_json({"authenticated": False, "reason": reason})
        else:
            print(f"not authenticated: {reason}")
        raise typer.Exit(ExitCode.PERMISSION_DENIED)
    allowed = sorted(p.value for p in POLICY[principal.role])
    expires = iso(principal.expires_at) if principal.expires_at else None
    if output is Output.json:
        runtime.emit_json(
            {
                "authenticated": True,
                "operator": principal.operator,
                "role": principal.role,
                "expires_at": expires,
                "via": "session" if principal.session_id else "token",
                "permissions": allowed,
            }
        )
        return
    print(
        f"operator: {principal.operator}\nrole: {principal.role}\n"
        f"session expires: {expires or 'n/a (token)'}\nallowed: {', '.join(allowed)}"
    )
