"""The rotation schedule: crontab block editing, and install/run/status/remove through the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from commands import crontab
from ledger.errors import ValidationFailed

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
