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


def reexec_in_private_keyring(argv: list[str], prefix: str) -> int:
    """Run `python argv...` inside the private session; return its exit status."""
    if not (shutil.which("dbus-run-session") and shutil.which("gnome-keyring-daemon")):
        sys.exit(f"{prefix}: needs dbus-run-session and gnome-keyring-daemon")
    home = tempfile.mkdtemp(prefix=f"{prefix}-")
    run = Path(home) / "run"
    run.mkdir(mode=0o700)
    env = {
        **os.environ,
        "HOME": home,
        "XDG_RUNTIME_DIR": str(run),
        "KEYRING_PASSWORD": secrets.token_hex(16),
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
