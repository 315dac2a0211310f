"""Fixtures for the whole test suite."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """One torch thread per test process: tiny networks run ~100x slower when the
    ``pytest -n 2`` workers oversubscribe a small machine's cores."""
    import torch  # imported here, not at collection time

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
