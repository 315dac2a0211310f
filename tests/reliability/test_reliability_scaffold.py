"""The suite's own helpers: a refused command is recognised, a traceback is not taken for an error."""

from __future__ import annotations

import pytest
from reliability_helpers import expect_clear_error


@pytest.mark.reliability("clear_error")
def test_unknown_solver_name_is_a_clear_cli_error(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("a,b,y\n1,2,3\n2,1,4\n3,3,5\n4,0,1\n")
    expect_clear_error(["select", "--data", str(data), "--target", "y", "--k", "1", "--solver", "nope"], "nope")


def test_expect_clear_error_fails_on_success(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("a,b,y\n1,2,3\n2,1,4\n3,3,5\n4,0,1\n")
    with pytest.raises(AssertionError, match="expected exit status 2, got 0"):
        expect_clear_error(["select", "--data", str(data), "--target", "y", "--k", "1", "--solver", "omp"])
