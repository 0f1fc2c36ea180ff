"""The rotation schedule: crontab block editing, and install/run/status/remove through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from commands import crontab
from ledger.errors import ValidationFailed
from tests.clikit import Ledger
from tests.test_cli_rotation import _json, _seed

MARK = crontab.marker(Path("/srv/ledger"))


def test_block_is_added_replaced_and_removed_keeping_other_lines() -> None:
    mine = "0 1 * * * backup\n"
    once = crontab.with_block(mine, MARK, ["5 3 * * * job-a"])
    assert once.startswith(mine) and crontab.find_block(once, MARK) == ["5 3 * * * job-a"]
    twice = crontab.with_block(once, MARK, ["7 4 * * * job-b"])
    assert twice.count("# >>> ") == 1 and crontab.find_block(twice, MARK) == ["7 4 * * * job-b"]
    other = crontab.with_block(twice, crontab.marker(Path("/other")), ["x"])
    gone, found = crontab.without_block(other, MARK)
    assert found and gone.startswith(mine) and crontab.find_block(gone, MARK) is None
    assert crontab.find_block(gone, crontab.marker(Path("/other"))) == ["x"]
    assert crontab.without_block(gone, MARK) == (gone, False)


@pytest.mark.parametrize("at", ["24:00", "3", "03:60", "noon", "03:00:00"])
def test_bad_times_are_refused(at: str) -> None:
    with pytest.raises(ValidationFailed):
        crontab.parse_at(at)


def test_job_line_never_holds_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRETS_LEDGER_PASSPHRASE", "do-not-write-me")
    monkeypatch.setenv("SECRETS_LEDGER_TOKEN", "slt.alice.do-not-write-me")
    monkeypatch.setenv("SECRETS_LEDGER_VAULT", "file")
    line = crontab.job_line(Path("/srv/a%b"), "03:07", "rotation-bot")
    assert line.startswith("7 3 * * * ") and "do-not-write-me" not in line
    assert "SECRETS_LEDGER_AUTOMATION=rotation-bot" in line and "SECRETS_LEDGER_VAULT=file" in line
    assert "/srv/a\\%b" in line and "rotate --scheduled" in line


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
