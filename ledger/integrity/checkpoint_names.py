"""The names and the interval of signed checkpoints, apart from `ledger.checkpoint`.

`ledger.checkpoint` defines the Checkpoint aggregate (its event classes are built when the
module is imported) and the signing: only commands that write or read a checkpoint need it.
Every ledger needs these constants when it opens, so they live here.
"""

from __future__ import annotations

CHECKPOINT_KEY_ENTRY = "ledger.checkpoint-key"
# The newest checkpoint as this host's keychain knows it: evidence outside the database that
# the log once reached that far (detects a truncated tail).
WITNESS_ENTRY = "ledger.checkpoint-witness"
DEFAULT_INTERVAL = 1000
