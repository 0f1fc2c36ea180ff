"""Where events are kept: opening a ledger, the recorders, the hash chain."""
