"""Issue 5's proof through the real CLI: for random histories built with `secrets` in a
subprocess, `secrets audit replay` at each recorded instant equals what `secrets list` showed
then (recorded while building the history, with the ledger position it had reached).

Each example starts a fresh ledger and runs 7 to 10 CLI processes (1.5-2 s each on the
shared 2-core machine), so examples are few and short: the test takes about a minute.
tests/unit/test_replay.py covers many more histories in-process, against the aggregates.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projections.timefmt import iso
from tests import infra
from tests.clikit import Ledger

ADDRESSES = [("svc", "alpha"), ("svc", "beta"), ("other", "gamma")]

step = st.one_of(
    st.tuples(st.just("set"), st.integers(0, 2), st.integers(0, 99)),
    st.tuples(st.just("rollback"), st.integers(0, 2), st.integers(1, 3)),
    st.tuples(st.just("delete"), st.integers(0, 2), st.just(0)),
    st.tuples(st.just("restore"), st.integers(0, 2), st.just(0)),
)

# 0 done; 3 not found (rollback to a missing version, delete of an unknown secret), 5 refused
# (restore of a live secret, rollback to the version already current), 1 any other refusal:
# refusals of this history, which change no secret (the replay comparison below proves it).
ACCEPTED = {0, 1, 3, 5}


def _position(ledger: Ledger) -> int:
    events = ledger.events()
    return events[-1].position if events else 0


def _timestamp(ledger: Ledger, position: int) -> str:
    """The recorded timestamp of the event at `position`, read from the store (no process)."""
    (state,) = [e.state for e in ledger.events() if e.position == position]
    stamped = datetime.fromisoformat(state["timestamp"]["_data_"])
    return iso(stamped)  # as the CLI prints times: UTC, milliseconds


def _fresh_ledger(home: Path, service: infra.SecretService) -> Ledger:
    """A new ledger whose commands run with the founder's token (no login: one process less)."""
    env = {**service.env, "SECRETS_LEDGER_HOME": str(home)}
    ledger = Ledger(home=home, env=env, backend_factory=service.backend)
    created = ledger.run("init", "--operator", "alice")
    assert created.returncode == 0, created.stderr
    ledger.env["SECRETS_LEDGER_TOKEN"] = created.stdout.strip()
    return ledger


def _shown(listing: dict[str, Any]) -> dict[str, tuple[int, str, bool]]:
    return {
        f"{s['environment']}/{s['service']}/{s['name']}": (
            s["current_version"],
            s["fingerprint"],
            s["deleted"],
        )
        for s in listing["secrets"]
    }


def _replayed(doc: dict[str, Any]) -> dict[str, tuple[int, str, bool]]:
    return {
        f"{s['environment']}/{s['service']}/{s['name']}": (
            s["current_version"],
            s["fingerprint"],
            s["status"] != "active",
        )
        for s in doc["secrets"]
    }


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(steps=st.lists(step, min_size=2, max_size=3), pick=st.data())
def test_cli_replay_at_each_recorded_instant_equals_what_the_cli_showed(
    secret_service: infra.SecretService, steps: list[Any], pick: Any
) -> None:
    home = Path(tempfile.mkdtemp(prefix="sl-replay-cli-"))
    try:
        ledger = _fresh_ledger(home / "ledger", secret_service)
        recorded: list[tuple[int, dict[str, tuple[int, str, bool]]]] = []
        for kind, index, arg in steps:
            service, name = ADDRESSES[index]
            target = ("--service", service, "--name", name)
            if kind == "set":
                value = f"value-{arg}-" + "Zq8x" * 6
                result = ledger.run("set", *target, "--value-stdin", input=value)
            elif kind == "rollback":
                result = ledger.run("rollback", *target, "--version", str(arg))
            else:
                result = ledger.run(kind, *target)
            assert result.returncode in ACCEPTED, (kind, result.returncode, result.stderr)
            assert "Traceback" not in result.stderr
            shown = _shown(ledger.json("list", "--deleted"))
            recorded.append((_position(ledger), shown))

        # One recorded step, drawn at random, is replayed by its instant (--at the timestamp
        # of its last event: steps are separate processes, so no later event shares that
        # millisecond); every other step by its position.
        by_time = pick.draw(st.integers(0, len(recorded) - 1))
        for n, (position, shown) in enumerate(recorded):
            if n == by_time:
                stamp = _timestamp(ledger, position)
                doc = ledger.json("audit", "replay", "--at", stamp)
            else:
                doc = ledger.json("audit", "replay", "--position", str(position))
            assert doc["position"] == position, (n == by_time, steps)
            assert _replayed(doc) == shown, (position, steps)
    finally:
        shutil.rmtree(home, ignore_errors=True)
