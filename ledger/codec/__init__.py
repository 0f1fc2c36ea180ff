"""Turning stored bytes into this project's own types, and nothing else."""
