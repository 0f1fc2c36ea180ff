"""One writer process for the PostgreSQL concurrency test
(tests/integration/test_pg_concurrency.py).

    python -m tests.pg_worker '{"url": ..., "home": ..., "token": ..., "key": ..., ...}'

Writes `count` versions through the application (authorise, keychain, append, retry on a lost
race), to one shared secret or to its own secret, after waiting for the start file so that all
writers begin together. Prints the version numbers it got, as JSON.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ledger.access.credentials import Credential
from ledger.address import SecretAddress
from ledger.application import FINGERPRINT_KEY_ENTRY
from ledger.store.opening import open_ledger
from ledger.vault.memory import MemoryKeyring


def main() -> None:
    cfg = json.loads(sys.argv[1])
    app = open_ledger(Path(cfg["home"]), backend=MemoryKeyring(), database_url=cfg["url"])
    app.vault.put(FINGERPRINT_KEY_ENTRY, cfg["key"])  # this process's "keychain"
    cred = Credential(token=cfg["token"])
    address = SecretAddress("production", "svc", cfg["name"])
    start = Path(cfg["start"])
    deadline = time.monotonic() + 60
    while not start.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    got: list[int] = []
    values: dict[int, str] = {}
    for n in range(cfg["count"]):
        value = f"{cfg['tag']}-{n:04d}-value"
        version = app.write(cred, address, value, spec_check=lambda _v: None)
        got.append(version.number)
        values[version.number] = value
    # Each process can read back what it wrote (while the retention policy keeps it).
    chosen, value = app.read(cred, address, got[-1]) if got else (None, "")
    assert chosen is None or values[chosen.number] == value
    app.close()
    print(json.dumps({"versions": got}))


if __name__ == "__main__":
    main()
