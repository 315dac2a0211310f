"""The reliability suite: hostile files, arguments and process faults, each with a stated expectation.

Every test here carries ``@pytest.mark.reliability("clear_error")`` (the input must be refused with
a message that names the problem; on the command line: exit status 2, one ``sparsesel …: error:``
line, no traceback) or ``@pytest.mark.reliability("right_result")`` (the input is valid, if odd,
and the answer must be right against an independent reference). The root ``conftest.py`` counts
the cases of each kind and prints them at the end of the run.
"""

from __future__ import annotations

import pytest
from reliability_helpers import run_cli


@pytest.fixture
def cli():
    """The in-process command line: ``cli(argv) -> CliRun`` (see ``reliability_helpers``)."""
    return run_cli
