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


# ------------------------------------------------------------------ reliability-suite counts
_RELIABILITY_KINDS = ("clear_error", "right_result")
_reliability_outcomes: dict[tuple[str, str], int] = {}


def pytest_collection_modifyitems(config, items):
    """Check every ``reliability`` mark names a kind, and carry it to the report (xdist-safe)."""
    for item in items:
        mark = item.get_closest_marker("reliability")
        if mark is None:
            continue
        kind = mark.args[0] if mark.args else None
        if kind not in _RELIABILITY_KINDS:
            raise pytest.UsageError(f"{item.nodeid}: reliability mark needs one of {_RELIABILITY_KINDS}, got {kind!r}")
        item.user_properties.append(("reliability", kind))


def pytest_runtest_logreport(report):
    kind = dict(report.user_properties).get("reliability")
    if kind is None:
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        key = (kind, report.outcome)
        _reliability_outcomes[key] = _reliability_outcomes.get(key, 0) + 1


def pytest_terminal_summary(terminalreporter):
    if not _reliability_outcomes:
        return
    total = sum(_reliability_outcomes.values())
    parts = []
    for kind in _RELIABILITY_KINDS:
        by_outcome = {o: n for (k, o), n in _reliability_outcomes.items() if k == kind}
        if by_outcome:
            shown = ", ".join(f"{n} {o}" for o, n in sorted(by_outcome.items()))
            parts.append(f"{kind}: {sum(by_outcome.values())} ({shown})")
    terminalreporter.write_line(f"reliability suite: {total} cases; " + "; ".join(parts))
