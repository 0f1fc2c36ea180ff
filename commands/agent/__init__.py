"""The optional start-up agent: a per-user process that has the CLI's modules imported already
and runs `get`, `versions` and `list` for callers on a private socket. Nothing else depends on
it; a newcomer can ignore this package. `server.py` says how it works and what it refuses.

Kept empty: `commands/launch.py` imports `client` on every start, before anything else."""
