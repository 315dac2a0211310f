"""Reliability (issue 20): ``sparsesel compress --selector`` refuses unknown selector names clearly,
listing the valid ones, before any work or any file is written."""

from __future__ import annotations

import pytest
from reliability_helpers import expect_clear_error

from sparsesel.commands.compress import DEMO_CHECKPOINT


@pytest.mark.reliability("clear_error")
@pytest.mark.parametrize("name", ["sapp", "SA++", "l1", "", "magnitude,taylor"])
def test_compress_refuses_an_unknown_selector(tmp_path, name):
    out = tmp_path / "run"
    expect_clear_error(["compress", str(DEMO_CHECKPOINT), "--out", str(out), "--selector", name, "--no-progress"],
                       "unknown selector", "choose one of sa++, magnitude, taylor, random")
    assert not out.exists()
