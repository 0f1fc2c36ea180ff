"""Rotation: the catalogue, the policy, generated values and rotation runs."""
