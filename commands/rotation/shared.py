"""What the rotation commands share: their values-file option, the rotator, the progress bar,
the report of a batch and its exit code."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from commands import runtime

if TYPE_CHECKING:
    from ledger.address import SecretAddress
    from ledger.application import SecretsLedger
    from ledger.rotation.runs import BatchReport, Rotator

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


def open_rotator(ledger: SecretsLedger, catalogue: Path | None) -> Rotator:
    from ledger.rotation.catalogue import load_catalogue
    from ledger.rotation.runs import Rotator

    return Rotator(ledger, load_catalogue(catalogue))


def values_from(path: Path | None) -> dict[SecretAddress, str]:
    from commands.values_file import load_values, warn_if_exposed

    if path is None:
        return {}
    warning = warn_if_exposed(path)
    if warning:
        runtime.info(warning)
    return load_values(path)


class Progress:
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
def progress(label: str) -> Iterator[Progress]:
    shown = Progress(label)
    try:
        yield shown
    finally:
        shown.close()


def batch_json(report: BatchReport) -> dict[str, Any]:
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


def batch_lines(report: BatchReport) -> list[str]:
    lines = [f"rotated      {a} v{v} [{fp}]" for a, v, fp in report.rotated]
    lines += [f"needs value  {a} (provider-issued: use --values-file)" for a in report.needs_value]
    lines += [f"failed       {a}: {why}" for a, why in report.failed]
    lines += [f"rejected     {a}: rule {rule}" for a, rule in report.rejected]
    lines += [f"skipped      {a}: {why}" for a, why in report.skipped]
    lines += [f"unused value {a} (already rotated in this run)" for a in report.unused]
    return lines


def batch_exit(report: BatchReport) -> int:
    from commands.exit_codes import ExitCode

    if report.rejected:
        return ExitCode.VALIDATION_FAILED
    if report.needs_value or report.failed:
        return ExitCode.ERROR
    return ExitCode.OK


def usage_value(parse: Callable[[str], _T], text: str) -> _T:
    """`parse(text)` for an option's value; a malformed value is a usage error (exit 2), as
    for every other option (docs/rotation.md)."""
    from commands.value_input import UsageProblem
    from ledger.errors import ValidationFailed

    try:
        return parse(text)
    except ValidationFailed as exc:
        raise UsageProblem(str(exc)) from None


def finish(code: int) -> None:
    if code:
        raise typer.Exit(code)
