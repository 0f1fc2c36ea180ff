"""Whose key vouches for the history: `audit verify` checks signed checkpoints against a key,
and says which. A bundle's own pubkey.pem proves only that whoever made the bundle signed it
(anyone can make a self-consistent bundle of their own), so a verdict resting on it says the
key is unpinned and shows its fingerprint; a key pinned with `--pubkey` that did not sign the
checkpoints is exit 6. On the live ledger, a keychain that signed checkpoints pins its own key,
so a log whose checkpoints were all forged anew under another key is a signature fault.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from ledger.checkpoint import (
    CHECKPOINT_TOPIC,
    new_private_key,
    public_key_of,
    public_pem,
    sign,
    signed_message,
)
from ledger.store.chain import GENESIS, link
from tests.clikit import Ledger

pytestmark = pytest.mark.sqlite_file


def _bundle(ledger: Ledger, tmp_path: Path) -> Path:
    ledger.set("nexus", "mcp.bun.apiKey", "sk-live-value-0001-abcdefghij")
    out = tmp_path / "bundle"
    exported = ledger.run("audit", "export", "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    return out


def _fingerprint(ledger: Ledger, tmp_path: Path) -> tuple[Path, str]:
    shown = ledger.run("audit", "pubkey")
    assert shown.returncode == 0, shown.stderr
    pem = tmp_path / "ledger-checkpoints.pem"
    pem.write_text(shown.stdout)
    (line,) = [x for x in shown.stderr.splitlines() if x.startswith("fingerprint ")]
    return pem, line.split()[1]


def _resign(database: Path, private: str, *, drop: bool = False) -> None:
    """Every checkpoint signed anew under `private` (or, with `drop`, removed), and the chain
    recomputed: what a writer of the file can make without the ledger's key."""
    with sqlite3.connect(database) as db:
        if drop:
            db.execute("DELETE FROM stored_events WHERE topic = ?", (CHECKPOINT_TOPIC,))
        rows = db.execute(
            "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events "
            "ORDER BY rowid"
        ).fetchall()
        previous, links, signature = GENESIS, {0: GENESIS}, ""
        db.execute("DELETE FROM event_chain")
        for position, oid, version, topic, state in rows:
            if topic == CHECKPOINT_TOPIC:
                claim = json.loads(state)
                claim["head"] = links[claim["position"]].hex()
                claim["previous_signature"] = signature
                claim["public_key"] = public_key_of(private)
                claim["signature"] = signature = sign(
                    private,
                    signed_message(claim["sequence"], claim["position"], claim["head"], signature),
                )
                state = json.dumps(claim).encode()
                db.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (state, position))
            previous = links[position] = link(previous, position, oid, version, topic, state)
            db.execute("INSERT INTO event_chain VALUES (?, ?)", (position, previous))


def test_a_bundle_checked_with_its_own_key_says_the_key_is_unpinned_and_whose_it_is(
    ledger: Ledger, tmp_path: Path
) -> None:
    bundle = _bundle(ledger, tmp_path)
    pem, fingerprint = _fingerprint(ledger, tmp_path)
    result = ledger.run("audit", "verify", "--bundle", str(bundle))
    assert result.returncode == 0, result.stderr
    assert "not pinned" in result.stderr and fingerprint in result.stderr, result.stderr
    pinned = ledger.run("audit", "verify", "--bundle", str(bundle), "--pubkey", str(pem))
    assert pinned.returncode == 0, pinned.stderr
    assert "not pinned" not in pinned.stderr, pinned.stderr


def test_a_bundle_resigned_under_another_key_fails_against_the_pinned_key(
    ledger: Ledger, tmp_path: Path
) -> None:
    bundle = _bundle(ledger, tmp_path)
    pem, fingerprint = _fingerprint(ledger, tmp_path)
    forger = new_private_key()
    _resign(bundle / "ledger.sqlite", forger)
    (bundle / "pubkey.pem").write_text(public_pem(public_key_of(forger)))
    (bundle / "checkpoint.json").unlink()  # it names the real signature: a forger drops it
    unpinned = ledger.run("audit", "verify", "--bundle", str(bundle))
    # Self-consistent: it verifies, but says whose key that is (not the ledger's).
    assert unpinned.returncode == 0, unpinned.stderr
    assert "not pinned" in unpinned.stderr and fingerprint not in unpinned.stderr
    pinned = ledger.run("audit", "verify", "--bundle", str(bundle), "--pubkey", str(pem))
    assert pinned.returncode == 6, pinned.stderr
    assert "signature" in pinned.stdout, pinned.stdout


def test_a_bundle_stripped_of_its_checkpoints_does_not_verify_against_a_pinned_key(
    ledger: Ledger, tmp_path: Path
) -> None:
    bundle = _bundle(ledger, tmp_path)
    pem, _ = _fingerprint(ledger, tmp_path)
    _resign(bundle / "ledger.sqlite", new_private_key(), drop=True)
    (bundle / "checkpoint.json").unlink()
    result = ledger.run("audit", "verify", "--bundle", str(bundle), "--pubkey", str(pem))
    assert result.returncode == 6, result.stderr
    assert "no signed checkpoint" in result.stderr, result.stderr


def test_a_live_log_resigned_under_another_key_is_a_signature_fault(ledger: Ledger) -> None:
    ledger.set("nexus", "mcp.bun.apiKey", "sk-live-value-0001-abcdefghij")
    for _ in range(2):
        assert ledger.run("audit", "checkpoint").returncode == 0
    _resign(ledger.home / "ledger.sqlite", new_private_key())
    result = ledger.run("audit", "verify", "--output", "json")
    assert result.returncode == 6, result.stderr
    fault = json.loads(result.stdout)["fault"]
    assert fault["kind"] == "signature", fault
    assert "this keychain's checkpoint key" in fault["detail"], fault
