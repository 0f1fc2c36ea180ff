"""Write a realistic ledger of N events for the scale benchmarks (cached on disk by parameters).

    PYTHONPATH=. python tests/benchmarks/generate_ledger.py --events 200000 [--secrets 5000]
        [--operators 40] [--seed 1] [--out /tmp/secrets-ledger-bench]

The ledger is a real one: the chained SQLite store (`ledger.sqlite`, links written in the
insert transaction), real events made by the real aggregates (`Secret`, `Operator`,
`ReadReceipt`, `Denial`, `Rejection`, `Incident`), snapshots every 50 events and a signed
checkpoint every 1000 events by the application itself, so `secrets audit verify` passes on it.
What it skips is the command layer: no authorisation round trip per action and many aggregate
changes per `save(...)` (one transaction per batch of about `--batch` events), which is what
makes a million events possible in minutes instead of hours.

Values go to the in-memory fake keyring (`ledger.vault.memory.MemoryKeyring`) and are lost when
the generator exits: no scale benchmark reads a value, only the log. Fingerprints are real
(HMAC under the ledger's fingerprint key). Timestamps come from a simulated clock that advances
a few seconds per action from 2025-01-01, so `--at T` cuts fall inside the history.

The history: `--secrets` secrets over 3 environments and ~60 services, each provisioned once,
then operators (senior engineers, engineers, analysts) log in, read (about 45% of actions),
set and rotate (25%; values beyond the retention of 10 are pruned), get refused (8%), fail
validation (2%), roll back, delete and restore, and log out; now and then a role changes or an
emergency rotation runs over 20 secrets of a service.

The ledger lands in `<out>/ledger-v<generator>-e<events>-s<secrets>-o<operators>-r<seed>/`
with `generated.json` (parameters, event count, time taken, rate, operator token for the CLI).
If that file exists the ledger is reused as is.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

GENERATOR_VERSION = 1
DEFAULT_OUT = Path("/tmp/secrets-ledger-bench")
START = datetime(2025, 1, 1, tzinfo=UTC)
ENVIRONMENTS = ("prod", "staging", "dev")
HOSTS = ("ci-runner-1", "ci-runner-2", "ops-laptop-ana", "ops-laptop-ben", "bastion")
NAME_PARTS = ("apiKey", "password", "token", "dsn", "secret", "webhookSecret", "privateKey")


def ledger_dir(out: Path, events: int, secrets: int, operators: int, seed: int) -> Path:
    return out / f"ledger-v{GENERATOR_VERSION}-e{events}-s{secrets}-o{operators}-r{seed}"


def load_meta(directory: Path) -> dict[str, Any] | None:
    meta = directory / "generated.json"
    if not meta.is_file():
        return None
    loaded: dict[str, Any] = json.loads(meta.read_text())
    return loaded


class _Generator:
    def __init__(self, home: Path, secrets: int, operators: int, seed: int, batch: int) -> None:
        from ledger import context
        from ledger.store.opening import open_ledger
        from ledger.vault.memory import MemoryKeyring

        self.rng = random.Random(seed)
        self.clock = START
        self.batch = batch
        self.context = context
        self._clock_token = context.current_clock.set(lambda: self.clock)
        self.ledger = open_ledger(home, create=True, backend=MemoryKeyring())
        issued = self.ledger.initialize("admin")
        assert issued is not None
        self.token = issued.token
        self.retention = self.ledger.settings.retention
        self.events = self.ledger.recorder.max_notification_id() or 0
        self.dirty: dict[Any, Any] = {}  # aggregates with pending events, by id
        self.pending = 0
        self.saves = 0
        self.n_secrets = secrets
        self.n_operators = operators
        self.secrets: list[Any] = []
        self.operators: list[Any] = []
        self.open_sessions: dict[str, str] = {}  # operator name -> session id

    # -- plumbing -------------------------------------------------------------------------

    def tick(self, low: float = 1.0, high: float = 30.0) -> None:
        self.clock += timedelta(seconds=self.rng.uniform(low, high))

    def stage(self, aggregate: Any, events: int) -> None:
        self.dirty[aggregate.id] = aggregate
        self.pending += events
        if self.pending >= self.batch:
            self.flush()

    def flush(self) -> None:
        if not self.dirty:
            return
        recordings = self.ledger.save(*self.dirty.values())
        self.saves += 1
        self.events = recordings[-1].notification.id
        self.dirty.clear()
        self.pending = 0
        if self.ledger.post_commit_problems:
            sys.exit(f"generate_ledger: {'; '.join(self.ledger.post_commit_problems)}")

    def acting(self, operator: str) -> Any:
        self.context.current_correlation.set(f"{self.rng.getrandbits(128):032x}")
        return self.context.acting_as(operator)

    def new_value(self, secret: Any) -> tuple[str, str]:
        """(fingerprint, value): a random value and its real keyed fingerprint."""
        value = f"{self.rng.getrandbits(192):048x}"
        return self.ledger.fingerprint(secret.address, value), value

    # -- history --------------------------------------------------------------------------

    def setup(self) -> None:
        from ledger.operator import Operator
        from ledger.secret import Secret

        with self.acting("admin"):
            for i in range(self.n_operators):
                role = ("senior-engineer", "engineer", "engineer", "analyst")[i % 4]
                operator = Operator(f"op{i:03d}", role)
                operator.issue_token(f"{self.rng.getrandbits(64):016x}", f"{i:064x}")
                self.operators.append(operator)
                self.tick()
                self.stage(operator, 2)
            services = [f"svc{i:02d}" for i in range(max(1, self.n_secrets // 80))]
            for i in range(self.n_secrets):
                secret = Secret(
                    ENVIRONMENTS[i % 3],
                    services[(i // 3) % len(services)],
                    f"{NAME_PARTS[i % len(NAME_PARTS)]}.k{i:05d}",
                )
                self.secrets.append(secret)
                self.set_version(secret, "provision")
                self.tick(0.1, 2.0)
        self.flush()

    def set_version(self, secret: Any, reason: str, rolled_back_from: int | None = None) -> None:
        from ledger.application import entry_name

        fingerprint, value = self.new_value(secret)
        host = self.rng.choice(HOSTS)
        number = secret.add_version(fingerprint, reason, host, rolled_back_from)
        vault = self.ledger.vault
        vault.put(entry_name(secret.address, number, fingerprint), value)
        pruned = secret.prune_beyond(self.retention)
        for v in pruned:
            vault.delete(entry_name(secret.address, v.number, v.fingerprint))
        self.stage(secret, 1 + len(pruned))

    def session(self) -> None:
        """One operator's session: login, a few dozen actions, logout."""
        from ledger.records import Denial, Incident, ReadReceipt, Rejection

        operator = self.rng.choice(self.operators)
        if operator.role is None:
            return
        name = operator.name
        with self.acting(name):
            session_id = f"{self.rng.getrandbits(128):032x}"
            operator.open_session(
                session_id,
                f"{self.rng.getrandbits(256):064x}",
                self.clock + timedelta(hours=8),
                self.rng.choice(HOSTS),
            )
            self.stage(operator, 1)
            senior = operator.role == "senior-engineer"
            for _ in range(self.rng.randint(5, 60)):
                self.tick()
                secret = self.rng.choice(self.secrets)
                where = (secret.environment, secret.service, secret.name)
                roll = self.rng.random()
                if roll < 0.45 and not secret.deleted:
                    self.stage(ReadReceipt(*where, secret.current_version), 1)
                elif roll < 0.70 and not senior and roll > 0.66:
                    self.stage(Denial("set", f"role {operator.role} may not set", *where), 1)
                elif roll < 0.70 and not senior:
                    self.stage(ReadReceipt(*where, secret.current_version), 1)
                elif roll < 0.70 and not secret.destroyed:
                    self.set_version(secret, self.rng.choice(("manual", "rotation", "rotation")))
                elif roll < 0.78 and not senior:
                    reason = f"role {operator.role} may not destroy"
                    self.stage(Denial("destroy", reason, *where), 1)
                elif roll < 0.80:
                    self.stage(Rejection(*where, self.rng.choice(("min-length", "format"))), 1)
                elif roll < 0.82 and senior and len(secret.retained_versions) > 1:
                    target = secret.retained_versions[-2]
                    self.set_version(secret, "rollback", target)
                elif roll < 0.83 and senior and not secret.destroyed:
                    if secret.deleted:
                        secret.restore()
                    else:
                        secret.delete()
                    self.stage(secret, 1)
                elif roll < 0.8305 and senior:
                    incident = Incident("credential leak drill")
                    self.stage(incident, 1)
                    hit = [s for s in self.secrets if s.service == secret.service][:20]
                    for s in hit:
                        if not s.destroyed:
                            self.set_version(s, "emergency")
                    incident.complete([str(s.address) for s in hit], [], [])
                    self.stage(incident, 1)
                else:
                    self.stage(ReadReceipt(*where, secret.current_version), 1)
            if self.rng.random() < 0.01:
                other = self.rng.choice(self.operators[4:] or self.operators)
                if other.role is not None and other.role != "senior-engineer":
                    other.grant(self.rng.choice(("engineer", "analyst")))
                    self.stage(other, 1)
        with self.acting(name):
            operator.close_session(session_id, "logout")
            self.stage(operator, 1)
        # Anonymous callers and expired sessions get refused too.
        if self.rng.random() < 0.2:
            with self.acting("anonymous"):
                self.stage(Denial("get", "no operator session", None, None, None), 1)
        self.tick(60, 1800)

    def close(self) -> None:
        self.flush()
        self.context.current_clock.reset(self._clock_token)
        self.ledger.close()


def generate(
    out: Path, events: int, secrets: int, operators: int, seed: int, batch: int = 1000
) -> tuple[Path, dict[str, Any]]:
    """The ledger's directory and its metadata, generating it unless already cached."""
    directory = ledger_dir(out, events, secrets, operators, seed)
    found = load_meta(directory)
    if found is not None:
        return directory, found
    if directory.exists():
        import shutil

        shutil.rmtree(directory)  # an interrupted run
    directory.mkdir(parents=True, mode=0o700)
    started = time.perf_counter()
    gen = _Generator(directory / "home", secrets, operators, seed, batch)
    gen.setup()
    marks: list[tuple[int, str]] = []  # (position, timestamp) every 5% of the target
    step = max(1, events // 20)
    while gen.events + gen.pending < events:
        gen.session()
        if (gen.events + gen.pending) // step > len(marks):
            gen.flush()
            marks.append((gen.events, gen.clock.isoformat()))
    gen.flush()
    total = gen.events
    elapsed = time.perf_counter() - started
    meta: dict[str, Any] = {
        "generator_version": GENERATOR_VERSION,
        "events_target": events,
        "events": total,
        "secrets": secrets,
        "operators": operators,
        "seed": seed,
        "batch": batch,
        "saves": gen.saves,
        "seconds": round(elapsed, 1),
        "events_per_second": round(total / elapsed),
        "first_timestamp": START.isoformat(),
        "last_timestamp": gen.clock.isoformat(),
        "marks": marks,
        "token": gen.token,
        "home": str(directory / "home"),
    }
    gen.close()
    (directory / "generated.json").write_text(json.dumps(meta, indent=2) + "\n")
    return directory, meta


def add_ledger_arguments(parser: argparse.ArgumentParser, events: int) -> None:
    """The options that name a generated ledger (and its cache directory), for every script
    that generates or reads one; `events` is the script's default size."""
    parser.add_argument("--events", type=int, default=events)
    parser.add_argument("--secrets", type=int, default=5000)
    parser.add_argument("--operators", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_ledger_arguments(parser, 200_000)
    parser.add_argument("--batch", type=int, default=1000, help="events per save (transaction)")
    args = parser.parse_args()
    directory, meta = generate(
        args.out, args.events, args.secrets, args.operators, args.seed, args.batch
    )
    size = (directory / "home" / "ledger.sqlite").stat().st_size
    print(
        f"{directory}: {meta['events']} events, {meta['secrets']} secrets, "
        f"{meta['operators']} operators, {size / 2**20:.0f} MiB; generated in "
        f"{meta['seconds']} s ({meta['events_per_second']} events/s, {meta['saves']} saves)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
