"""The service fixtures in tests/conftest.py start real, working services."""

from __future__ import annotations

import pytest

from tests import infra

# --------------------------------------------------------------------------- Secret Service


# --------------------------------------------------------------------------- PostgreSQL


# --------------------------------------------------------------------------- tmux, promtool


# --------------------------------------------------------------------------- the CLI runner


# --------------------------------------------------------------------------- failure messages


def test_a_missing_binary_names_its_debian_package() -> None:
    with pytest.raises(infra.MissingBinaryError, match=r"apt-get install -y prometheus"):
        infra.require_binary("/nonexistent/promtool", "prometheus")
    with pytest.raises(infra.MissingBinaryError, match=r"`tmux`"):
        infra.require_binary("definitely-not-a-real-program-xyz", "tmux")
