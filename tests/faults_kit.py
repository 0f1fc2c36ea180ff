"""Helpers of the fault tests in every tier (tests/{unit,integration,e2e}/test_faults.py)."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from ledger.access.credentials import Credential
from ledger.application import SecretsLedger
from ledger.store.chain import verify


def chain_ok(app: SecretsLedger) -> None:
    report, _ = verify(app.recorder.iter_rows(), app.recorder.iter_links())  # type: ignore[attr-defined]
    assert report.ok, report.fault


def fault_value() -> str:
    return "sk-fault-" + secrets.token_urlsafe(24)


def senior(app: SecretsLedger) -> Credential:
    issued = app.initialize("alice")
    assert issued is not None
    return Credential(token=issued.token)


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        check=True,
        capture_output=True,
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def fill_leaving(directory: Path, leave: int) -> Path:
    filler = directory / "filler"
    free = shutil.disk_usage(directory).free
    with filler.open("wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler
