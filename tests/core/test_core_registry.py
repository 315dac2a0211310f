"""The solver registry: registration rules, lookup, option checking."""

from dataclasses import dataclass

import numpy as np
import pytest

import sparsesel as ss
from sparsesel.problems.base import Problem
from sparsesel.registry import register_solver


@dataclass(frozen=True, eq=False)
class ToyProblem(Problem):
    """Pick the k largest of a vector: the optimum is known in closed form."""

    values: tuple
    k: int


@register_solver("toy_sort", kinds=ToyProblem, description="sort and take the top k")
def _toy_sort(problem: ToyProblem, *, reverse: bool = True) -> ss.Result:
    order = sorted(range(len(problem.values)), key=problem.values.__getitem__, reverse=reverse)
    chosen = tuple(order[: problem.k])
    return ss.Result(chosen, -sum(problem.values[i] for i in chosen), status="optimal")


def test_solve_runs_registered_solver_and_fills_name_and_time():
    result = ss.solve(ToyProblem((3.0, 1.0, 5.0, 2.0), k=2), solver="toy_sort")
    assert result.selected == (2, 0)
    assert result.objective == -8.0
    assert result.solver == "toy_sort"
    assert result.wall_time >= 0.0
    assert result.status == "optimal"


def test_solvers_for_lists_only_matching_kinds():
    assert ss.solvers_for(ToyProblem((1.0,), 1)) == {"toy_sort": "sort and take the top k"}
    assert "toy_sort" not in ss.solvers_for(ss.FeatureSelection(np.eye(3), [1.0, 2.0, 3.0], k=1))


def test_unknown_solver_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown solver 'nope' for ToyProblem; valid solvers: toy_sort"):
        ss.solve(ToyProblem((1.0,), 1), solver="nope")


def test_unknown_option_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['revers'\]; valid options: reverse=True"):
        ss.solve(ToyProblem((1.0,), 1), solver="toy_sort", revers=False)


def test_solve_rejects_non_problem():
    with pytest.raises(TypeError, match="expects a Problem instance"):
        ss.solve({"X": 1}, solver="omp")


def test_register_requires_keyword_only_options_with_defaults():
    with pytest.raises(TypeError, match="must be keyword-only"):

        @register_solver("bad_positional", kinds=ToyProblem, description="x")
        def _bad(problem, option=1):  # pragma: no cover - never called
            return None

    with pytest.raises(TypeError, match="needs a default value"):

        @register_solver("bad_default", kinds=ToyProblem, description="x")
        def _bad2(problem, *, option):  # pragma: no cover - never called
            return None


def test_same_name_twice_for_same_kind_is_an_error():
    with pytest.raises(ValueError, match="already registered for \\['ToyProblem'\\]"):

        @register_solver("toy_sort", kinds=ToyProblem, description="again")
        def _again(problem):  # pragma: no cover - never called
            return None


def test_register_rejects_non_problem_kinds():
    with pytest.raises(TypeError, match="kinds must be Problem subclasses"):
        register_solver("x", kinds=int, description="x")
