"""The rotation schedule: crontab block editing, and install/run/status/remove through the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from commands import crontab
from tests.clikit import Ledger
from tests.e2e.test_cli_rotation import _json, _seed


def test_schedule_install_run_status_remove(ledger: Ledger, tmp_path: Path) -> None:
    _seed(ledger)
    cron = tmp_path / "crontab"
    cron.write_text("0 1 * * * backup\n")
    env = {"SECRETS_LEDGER_CRONTAB": str(cron)}

    assert ledger.run("rotate", "schedule", "status", env=env).returncode == 1
    installed = ledger.run("rotate", "schedule", "install", "--at", "02:30", env=env)
    assert installed.returncode == 0, installed.stderr
    again = ledger.run("rotate", "schedule", "install", "--at", "04:45", env=env)
    assert again.returncode == 0, again.stderr
    text = cron.read_text()
    assert text.startswith("0 1 * * * backup\n") and text.count("# >>> secrets-ledger") == 1
    [line] = crontab.find_block(text, crontab.marker(ledger.home)) or []
    assert line.startswith("45 4 * * * ") and "slt." not in line
    assert ledger.token not in text

    status = ledger.run("rotate", "schedule", "status", "--output", "json", env=env)
    assert status.returncode == 0, status.stdout + status.stderr
    doc = json.loads(status.stdout)
    assert doc["installed"] and doc["in_crontab"] and doc["bot_token_in_keychain"]
    assert doc["at"] == "04:45" and doc["last_run"] is None

    # Run the job as cron would: the command part of the line, with no session file at all.
    command = line.split(" ", 5)[5].replace("\\%", "%")
    job_env = {k: v for k, v in ledger.env.items() if k != "SECRETS_LEDGER_HOME"}
    job_env["SECRETS_LEDGER_SESSION_FILE"] = str(tmp_path / "none.json")
    done = subprocess.run(["sh", "-c", command], env=job_env, check=False)
    assert done.returncode == 0
    log = (ledger.home / "rotation.log").read_text()
    assert "Summary: 0 rotated" in log  # nothing due yet

    rotate_status = _json(ledger, "rotate-status")
    assert rotate_status["schedule"]["installed"]
    assert rotate_status["schedule"]["last_run"]["complete"] is True
    shown = ledger.run("rotate-status").stdout.splitlines()[4]
    assert shown.startswith("Rotation Schedule: daily at 04:45 on ") and "last run" in shown

    removed = ledger.run("rotate", "schedule", "remove", env=env)
    assert removed.returncode == 0 and "rotation-bot revoked" in removed.stdout
    assert cron.read_text() == "0 1 * * * backup\n"
    assert ledger.run("rotate", "schedule", "status", env=env).returncode == 1
    rerun = subprocess.run(
        ["sh", "-c", command], env=job_env, check=False, capture_output=True, text=True
    )
    assert rerun.returncode == 4  # the bot is revoked: its job is refused (and recorded)
    assert "PERMISSION_DENIED" in (ledger.home / "rotation.log").read_text()
    assert os.stat(ledger.home / "rotation.log").st_mode & 0o077 == 0


# -- systemd user timer -------------------------------------------------------------------------

FAKE_SYSTEMCTL = """#!/bin/sh
# A stand-in for systemctl: records each call; `is-enabled` answers from a state file.
echo "$*" >> "$FAKE_SYSTEMCTL_LOG"
state="$FAKE_SYSTEMCTL_LOG.enabled"
case "$*" in
  "--user show-environment") [ -n "$FAKE_SYSTEMD_DOWN" ] && exit 1; echo "HOME=$HOME" ;;
  "--user enable --now "*) touch "$state" ;;
  "--user disable --now "*) rm -f "$state" ;;
  "--user is-enabled "*) if [ -e "$state" ]; then echo enabled; else echo disabled; exit 1; fi ;;
esac
exit 0
"""


@pytest.fixture()
def fake_systemd(tmp_path: Path) -> dict[str, str]:
    script = tmp_path / "bin" / "systemctl"
    script.parent.mkdir()
    script.write_text(FAKE_SYSTEMCTL)
    script.chmod(0o755)
    return {
        "SECRETS_LEDGER_SYSTEMCTL": str(script),
        "FAKE_SYSTEMCTL_LOG": str(tmp_path / "systemctl.log"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }


def _calls(env: dict[str, str]) -> list[str]:
    log = Path(env["FAKE_SYSTEMCTL_LOG"])
    return log.read_text().splitlines() if log.exists() else []


def test_unit_files_run_the_cron_job_daily_and_never_hold_a_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from commands import systemd_timer

    monkeypatch.setenv("SECRETS_LEDGER_PASSPHRASE", "do-not-write-me")
    monkeypatch.setenv("SECRETS_LEDGER_VAULT", "file")
    monkeypatch.setenv("SECRETS_LEDGER_PASSPHRASE_FILE", "/srv/pass 100%")
    home = Path("/srv/a%b")
    service = systemd_timer.service_text(home, "rotation-bot")
    timer = systemd_timer.timer_text(home, "03:07")
    assert "do-not-write-me" not in service + timer
    lines = service.splitlines()
    assert "Type=oneshot" in lines and "UMask=0077" in lines
    assert 'Environment="SECRETS_LEDGER_AUTOMATION=rotation-bot"' in lines
    assert 'Environment="SECRETS_LEDGER_HOME=/srv/a%%b"' in lines  # % escaped for systemd
    assert 'Environment="SECRETS_LEDGER_PASSPHRASE_FILE=/srv/pass 100%%"' in lines
    assert 'Environment="SECRETS_LEDGER_VAULT=file"' in lines
    assert f"WorkingDirectory={crontab.code_root()}" in lines
    [start] = [line for line in lines if line.startswith("ExecStart=")]
    assert start.endswith('"-m" "commands" "rotate" "--scheduled"')
    assert "StandardOutput=append:/srv/a%%b/rotation.log" in lines
    assert "StandardError=append:/srv/a%%b/rotation.log" in lines
    # The same job as the crontab line: same command, environment and log.
    cron_line = crontab.job_line(home, "03:07", "rotation-bot")
    assert "rotate --scheduled" in cron_line and "umask 077" in cron_line
    for key, value in crontab.job_environment(home, "rotation-bot").items():
        assert f"{key}=" in cron_line and f"{key}=" in service, key
        assert value.replace("%", "%%") in service
    name = systemd_timer.unit_name(home)
    assert timer.splitlines()[4:8] == [
        "[Timer]",
        "OnCalendar=*-*-* 03:07:00",
        "Persistent=true",
        f"Unit={name}.service",
    ]
    assert "WantedBy=timers.target" in timer
    assert systemd_timer.unit_name(Path("/srv/other")) != name

    # systemd's own checker, where this host has it (not a skip of the test: only this check).
    analyze = shutil.which("systemd-analyze")
    if analyze is not None:
        (tmp_path / f"{name}.service").write_text(
            systemd_timer.service_text(tmp_path, "rotation-bot")
        )
        (tmp_path / f"{name}.timer").write_text(systemd_timer.timer_text(tmp_path, "03:07"))
        checked = subprocess.run(
            [
                analyze,
                "verify",
                "--man=no",
                str(tmp_path / f"{name}.service"),
                str(tmp_path / f"{name}.timer"),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert checked.returncode == 0, checked.stderr


def test_systemd_timer_install_status_remove(
    ledger: Ledger, tmp_path: Path, fake_systemd: dict[str, str]
) -> None:
    from commands import systemd_timer

    _seed(ledger)
    env = dict(fake_systemd)
    units = Path(env["XDG_CONFIG_HOME"]) / "systemd" / "user"
    name = systemd_timer.unit_name(ledger.home)
    service, timer = units / f"{name}.service", units / f"{name}.timer"

    assert ledger.run("rotate", "schedule", "status", env=env).returncode == 1
    # systemd answers for the user and no crontab file is named: the timer is chosen.
    installed = ledger.run("rotate", "schedule", "install", "--at", "02:30", env=env)
    assert installed.returncode == 0, installed.stderr
    assert f"as systemd user timer {name}.timer" in installed.stdout
    assert "OnCalendar=*-*-* 02:30:00" in timer.read_text()
    assert ledger.token not in service.read_text() + timer.read_text()
    assert _calls(env) == [
        "--user show-environment",
        "--user daemon-reload",
        f"--user enable --now {name}.timer",
        f"--user restart {name}.timer",
    ]
    again = ledger.run("rotate", "schedule", "install", "--at", "04:45", env=env)
    assert again.returncode == 0, again.stderr
    assert "OnCalendar=*-*-* 04:45:00" in timer.read_text()
    assert sorted(p.name for p in units.iterdir()) == [service.name, timer.name]

    status = ledger.run("rotate", "schedule", "status", "--output", "json", env=env)
    assert status.returncode == 0, status.stdout + status.stderr
    doc = json.loads(status.stdout)
    assert (doc["installed"], doc["in_systemd"], doc["in_crontab"], doc["via"]) == (
        True,
        True,
        False,
        "systemd",
    )
    assert doc["at"] == "04:45" and doc["bot_token_in_keychain"]
    text = ledger.run("rotate", "schedule", "status", env=env).stdout
    assert f"systemd user timer on this host: {name}.timer" in text

    # Switching to cron explicitly removes the timer: one job per ledger.
    cron = tmp_path / "crontab"
    cron_env = {**env, "SECRETS_LEDGER_CRONTAB": str(cron)}
    switched = ledger.run("rotate", "schedule", "install", "--via", "cron", env=cron_env)
    assert switched.returncode == 0, switched.stderr
    assert not service.exists() and not timer.exists()
    assert f"--user disable --now {name}.timer" in _calls(env)
    assert crontab.find_block(cron.read_text(), crontab.marker(ledger.home))
    # ...and back to systemd removes the crontab block.
    back = ledger.run("rotate", "schedule", "install", "--via", "systemd", env=cron_env)
    assert back.returncode == 0, back.stderr
    assert crontab.find_block(cron.read_text(), crontab.marker(ledger.home)) is None
    assert service.exists() and timer.exists()

    removed = ledger.run("rotate", "schedule", "remove", env=cron_env)
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.startswith("systemd user timer removed; rotation-bot revoked")
    assert not service.exists() and not timer.exists()
    assert _calls(env)[-2:] == [f"--user disable --now {name}.timer", "--user daemon-reload"]
    assert ledger.run("rotate", "schedule", "status", env=cron_env).returncode == 1


def test_systemd_is_chosen_only_where_it_runs(
    ledger: Ledger, tmp_path: Path, fake_systemd: dict[str, str]
) -> None:
    cron = tmp_path / "crontab"
    down = {**fake_systemd, "FAKE_SYSTEMD_DOWN": "1"}
    # No user manager: an explicit --via systemd is refused before anything changes...
    refused = ledger.run("rotate", "schedule", "install", "--via", "systemd", env=down)
    assert refused.returncode == 1 and "--via cron" in refused.stderr
    assert not (Path(fake_systemd["XDG_CONFIG_HOME"]) / "systemd").exists()
    # ...and the default falls back to the user's crontab (a fake `crontab` command here).
    fake_crontab = tmp_path / "bin" / "crontab"
    fake_crontab.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "-l" ]; then cat "{cron}" 2>/dev/null || {{ echo "no crontab for me" >&2;'
        " exit 1; }; else cat > "
        f'"{cron}"; fi\n'
    )
    fake_crontab.chmod(0o755)
    path = f"{fake_crontab.parent}:{os.environ['PATH']}"
    fallback = ledger.run("rotate", "schedule", "install", env={**down, "PATH": path})
    assert fallback.returncode == 0, fallback.stderr
    assert "in your crontab" in fallback.stdout
    assert crontab.find_block(cron.read_text(), crontab.marker(ledger.home))
    assert not (Path(fake_systemd["XDG_CONFIG_HOME"]) / "systemd").exists()
    bad = ledger.run("rotate", "schedule", "install", "--via", "anacron", env=down)
    assert bad.returncode == 2
