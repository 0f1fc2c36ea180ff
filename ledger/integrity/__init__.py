"""Checking history: verification, signed checkpoints, snapshot checks, doctor."""
