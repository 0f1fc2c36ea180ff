"""Re-run a benchmark inside a private D-Bus session with its own unlocked gnome-keyring.

A throwaway HOME, so the user's real keychain is never touched (field notes: a headless
Secret Service). Shared by the benchmarks that measure against the Secret Service.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

#: Set (to the throwaway HOME) in the re-run process, so it knows it is already inside.
INNER = "SECRETS_LEDGER_BENCH_INNER"


#: Where gnome-keyring keeps its keyring files under a HOME.
KEYRINGS_DIR = Path(".local", "share", "keyrings")


def reexec_in_private_keyring(
    argv: list[str], prefix: str, *, seed: Path | None = None, password: str | None = None
) -> int:
    """Run `python argv...` inside the private session; return its exit status.

    `seed`: a keyrings directory saved from an earlier private session (`KEYRINGS_DIR` of its
    HOME), copied into the new HOME before the daemon starts, so the daemon starts holding its
    items; `password` must then be the one that session used.
    """
    if not (shutil.which("dbus-run-session") and shutil.which("gnome-keyring-daemon")):
        sys.exit(f"{prefix}: needs dbus-run-session and gnome-keyring-daemon")
    home = tempfile.mkdtemp(prefix=f"{prefix}-")
    run = Path(home) / "run"
    run.mkdir(mode=0o700)
    if seed is not None:
        (Path(home) / KEYRINGS_DIR).parent.mkdir(mode=0o700, parents=True)
        shutil.copytree(seed, Path(home) / KEYRINGS_DIR)
    env = {
        **os.environ,
        "HOME": home,
        "XDG_RUNTIME_DIR": str(run),
        "KEYRING_PASSWORD": password or secrets.token_hex(16),
        INNER: home,
    }
    script = (
        'printf %s "$KEYRING_PASSWORD" | gnome-keyring-daemon --unlock --components=secrets '
        '>/dev/null; exec "$@"'
    )
    try:
        return subprocess.call(
            ["dbus-run-session", "--", "sh", "-c", script, "sh", sys.executable, *argv], env=env
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)
