"""LayerAllocation: validation of the problem and its solvers against an independent enumeration."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sparsesel as ss


def enumerate_optimum(costs, errors, capacity):
    """The least summed error over every choice meeting every capacity (plain Python; the oracle)."""
    costs = [np.asarray(c, dtype=float).reshape(len(c), -1) for c in costs]
    capacity = np.atleast_1d(np.asarray(capacity, dtype=float))
    best = None
    for pick in itertools.product(*[range(len(c)) for c in costs]):
        spent = sum(c[j] for c, j in zip(costs, pick))
        if np.all(spent <= capacity):
            value = sum(float(e[j]) for e, j in zip(errors, pick))
            if best is None or value < best:
                best = value
    return best


# errors on a grid of quarters: many exact ties, and CP-SAT's power-of-two scaling is exact on them
@st.composite
def instances(draw, units=1):
    n_layers = draw(st.integers(1, 4))
    costs, errors = [], []
    for _ in range(n_layers):
        n = draw(st.integers(1, 5))
        shape = (n,) if units == 1 else (n, units)
        costs.append(np.array(draw(st.lists(st.integers(0, 12), min_size=math.prod(shape), max_size=math.prod(shape)))).reshape(shape))
        errors.append(np.array(draw(st.lists(st.integers(0, 8), min_size=n, max_size=n))) / 4)
    lowest = [sum(int(np.min(np.reshape(c, (len(c), -1))[:, u])) for c in costs) for u in range(units)]
    capacity = [low + draw(st.integers(0, 25)) for low in lowest]
    return costs, errors, capacity[0] if units == 1 else capacity


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
def test_dp_cp_sat_and_brute_force_reach_the_enumerated_optimum(instance):
    costs, errors, capacity = instance
    problem = ss.LayerAllocation(costs, errors, capacity)
    optimum = enumerate_optimum(costs, errors, capacity)
    for solver in ("dp", "cp_sat", "brute_force"):
        result = ss.solve(problem, solver)
        assert result.status == "optimal", solver
        assert result.objective == optimum, solver
        assert problem.is_feasible(result.selected), solver
        assert result.lower_bound == pytest.approx(optimum, abs=1e-9) and result.upper_bound == optimum


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances(units=2))
def test_several_units_cp_sat_equals_brute_force_and_enumeration(instance):
    costs, errors, capacity = instance
    problem = ss.LayerAllocation(costs, errors, capacity, units=("params", "macs"))
    optimum = enumerate_optimum(costs, errors, capacity)
    for solver in ("cp_sat", "brute_force"):
        result = ss.solve(problem, solver)
        if optimum is None:  # each unit fits alone, not both together
            assert result.status == "infeasible" and result.selected == () and "together" in result.info["message"]
        else:
            assert result.status == "optimal" and result.objective == optimum and problem.is_feasible(result.selected)
    assert "dp" not in ss.solvers_for(problem) and "greedy" not in ss.solvers_for(problem)


def hull_step_drops(costs, errors):
    """Error decrease of every step along each layer's lower convex hull (computed independently)."""
    drops = []
    for c, e in zip(costs, errors):
        points = sorted(set(zip(np.asarray(c, float).tolist(), np.asarray(e, float).tolist())))
        hull = []
        for point in points:  # lower-left convex chain (Andrew's monotone chain, lower hull)
            while len(hull) >= 2 and (hull[-1][1] - hull[-2][1]) * (point[0] - hull[-2][0]) >= (point[1] - hull[-2][1]) * (hull[-1][0] - hull[-2][0]):
                hull.pop()
            hull.append(point)
        drops += [a[1] - b[1] for a, b in zip(hull, hull[1:]) if b[1] < a[1]]
    return drops


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instances())
def test_greedy_is_feasible_and_within_one_step_of_the_lp_bound(instance):
    costs, errors, capacity = instance
    problem = ss.LayerAllocation(costs, errors, capacity)
    optimum = enumerate_optimum(costs, errors, capacity)
    result = ss.solve(problem, "greedy")
    assert problem.is_feasible(result.selected)
    lp = result.info["lp_bound"]
    assert lp <= optimum + 1e-9  # the LP relaxation bounds the integer optimum
    assert result.lower_bound <= optimum + 1e-9 <= result.objective + 2e-9
    drops = hull_step_drops(costs, errors)
    assert result.objective - lp <= (max(drops) if drops else 0.0) + 1e-9  # at most the one fractional step
    if result.status == "optimal":
        assert result.objective == optimum


def test_greedy_takes_the_best_error_per_cost_first():
    # layer 0: step of cost 10 saving 5 (0.5/unit); layer 1: step of cost 4 saving 4 (1/unit)
    problem = ss.LayerAllocation([[0, 10], [0, 4]], [[5, 0], [4, 0]], capacity=8)
    result = ss.solve(problem, "greedy")
    assert result.selected == (0, 1) and result.objective == 5.0
    assert result.info["lp_bound"] == pytest.approx(5.0 - 4 / 10 * 5)  # 4 units left of the 10-unit step
    assert result.info["fractional_layer"] == 0 and result.status == "feasible"


def test_rules_pick_the_smallest_level_above_the_largest_threshold_that_fits():
    costs = [[10, 2, 4, 6], [8, 1, 3, 5]]
    levels = {"rank_fraction": [[1.0, 0.25, 0.5, 0.75], [1.0, 0.3, 0.6, 0.9]],
              "kept_energy": [[1.0, 0.9, 0.95, np.nan], [1.0, 0.5, 0.99, 0.999]]}
    errors = [[0, 3, 2, 1], [0, 3, 2, 1]]
    problem = ss.LayerAllocation(costs, errors, 9, levels=levels)
    uniform = ss.solve(problem, "uniform")
    # t = 0.6: layer 0 takes 0.75 (cost 6), layer 1 0.6 (cost 3) = 9; t = 0.75 would cost 6 + 5
    assert uniform.selected == (3, 2) and uniform.info["threshold"] == 0.6
    energy = ss.solve(problem, "energy")
    # t = 0.95: layer 0 takes 0.95 (cost 4), layer 1 0.99 (cost 3); t = 0.99 needs layer 0 dense (10)
    assert energy.selected == (2, 2) and energy.info["threshold"] == 0.95
    # the cheap option is off the rank scale (NaN): the rule's cheapest choice costs 4 > 3
    tight = ss.LayerAllocation([[10, 1, 4]], [[0, 2, 1]], 3, levels={"rank_fraction": [[1.0, np.nan, 0.5]]})
    refused = ss.solve(tight, "uniform")
    assert refused.status == "infeasible" and refused.selected == ()
    assert "uniform rule's smallest setting (rank_fraction 0.5) costs 4 cost > capacity 3" in refused.info["message"]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"costs": [], "errors": [], "capacity": 1}, ValueError, "costs is empty"),
        ({"costs": [[1, 2], []], "errors": [[0, 1], []], "capacity": 5}, ValueError, r"costs\[1\] \(layer 1\) is an empty menu"),
        ({"costs": [[1, 2]], "errors": [[0, 1], [0]], "capacity": 5}, ValueError, "errors has 2 layers but costs has 1"),
        ({"costs": [[1, 2]], "errors": [[0, 1, 2]], "capacity": 5}, ValueError, r"errors\[0\] \(layer 0\) has 3 values but the layer has 2 options"),
        ({"costs": [[1, np.nan]], "errors": [[0, 1]], "capacity": 5}, ValueError, "NaN or infinite cost at option 1"),
        ({"costs": [[1, -2]], "errors": [[0, 1]], "capacity": 5}, ValueError, r"negative cost \(-2\) at option 1"),
        ({"costs": [[1, 2]], "errors": [[0, np.nan]], "capacity": 5}, ValueError, "NaN or infinite value at option 1"),
        ({"costs": [[1, 2]], "errors": [[0, -1]], "capacity": 5}, ValueError, "negative error"),
        ({"costs": [[[[1, 2, 3]]]], "errors": [[0]], "capacity": 5}, ValueError, r"costs\[0\] \(layer 0\) must be 1-D \(options\) or 2-D \(options x units\), got shape \(1, 1, 3\)"),
        ({"costs": [[[1, 2]], [[1, 2, 3]]], "errors": [[0], [0]], "capacity": [5, 5]}, ValueError, "every layer needs the same units"),
        ({"costs": [[[1, 2]]], "errors": [[0]], "capacity": 5}, ValueError, r"one number per cost unit \(2: cost\[0\], cost\[1\]\)"),
        ({"costs": [[1, 2]], "errors": [[0, 1]], "capacity": -1}, ValueError, "capacity must be finite and >= 0"),
        ({"costs": [[3, 5], [2, 9]], "errors": [[1, 0], [1, 0]], "capacity": 4, "units": "params"}, ValueError,
         "capacity 4 params is below the smallest achievable cost 5 params"),
        ({"costs": [["a", "b"]], "errors": [[0, 1]], "capacity": 5}, TypeError, "must be numeric"),
        ({"costs": [[True, False]], "errors": [[0, 1]], "capacity": 5}, TypeError, "got booleans"),
        ({"costs": "12", "errors": [[0, 1]], "capacity": 5}, TypeError, "one array per layer"),
        ({"costs": [[1, 2]], "errors": [[0, 1]], "capacity": 5, "levels": {"rank_fraction": [[0.5]]}}, ValueError,
         r"levels\['rank_fraction'\]\[0\] \(layer 0\) has 1 values but the layer has 2 options"),
        ({"costs": [[1, 2]], "errors": [[0, 1]], "capacity": 5, "names": ["a", "b"]}, TypeError, "names must be 1 strings"),
    ],
)
def test_bad_input_is_refused_with_a_message_naming_the_field(kwargs, error, match):
    with pytest.raises(error, match=match):
        ss.LayerAllocation(**kwargs)


def test_solvers_refuse_instances_they_cannot_solve_and_solvers_for_hides_them():
    fractional = ss.LayerAllocation([[0.5, 1.25]], [[1.0, 0.0]], 1.0)
    listed = ss.solvers_for(fractional)
    assert "dp" not in listed and "cp_sat" not in listed and {"greedy", "brute_force"} <= set(listed)
    with pytest.raises(ValueError, match="solver 'dp' does not accept this LayerAllocation: dp needs integer costs"):
        ss.solve(fractional, "dp")
    assert ss.solve(fractional, "brute_force").selected == (0,)
    with pytest.raises(ValueError, match=r"uniform rule reads levels\['rank_fraction'\], which this LayerAllocation does not have"):
        ss.solve(fractional, "uniform")
    nan_levels = ss.LayerAllocation([[1, 2]], [[1, 0]], 2, levels={"kept_energy": [[np.nan, np.nan]]})
    with pytest.raises(ValueError, match="NaN for every option of \\['layer 0'\\]"):
        ss.solve(nan_levels, "energy")
    big = ss.LayerAllocation([list(range(10))] * 7, [list(range(10))[::-1]] * 7, 100)
    with pytest.raises(ValueError, match="brute_force would enumerate 10,000,000 choices"):
        ss.solve(big, "brute_force")
    with pytest.raises(ValueError, match="back-pointers"):
        ss.solve(big, "dp", max_cells=100)


def test_objective_takes_exactly_result_selected():
    problem = ss.LayerAllocation([[1, 2, 3], [0, 4]], [[3.0, 1.0, 0.0], [2.0, 0.0]], capacity=5, units=["params"])
    assert problem.sense == "minimize"
    result = ss.solve(problem, "dp")
    assert result.selected == (2, 0) and problem.objective(result.selected) == result.objective == 2.0
    assert result.info["cost"] == {"params": 3} and result.info["capacity"] == {"params": 5}
    with pytest.raises(ValueError, match="one option per layer \\(2\\), got 1"):
        problem.objective((0,))
    with pytest.raises(ValueError, match=r"selected\[1\] = 2 is not an option of layer 'layer 1' \(0..1\)"):
        problem.objective((0, 2))


def test_cp_sat_time_limit_reports_the_gap():
    rng = np.random.default_rng(5)
    costs = [rng.integers(10**6, 10**8, size=40) for _ in range(60)]
    errors = [rng.random(40) for _ in range(60)]
    problem = ss.LayerAllocation(costs, errors, capacity=int(sum(c.min() for c in costs) + 5 * 10**8))
    for time_limit in (0.001, 0.2):
        result = ss.solve(problem, "cp_sat", time_limit=time_limit)
        assert result.status in ("time_limit", "optimal")
        if not result.selected:  # stopped before any allocation was found
            assert result.status == "time_limit" and math.isnan(result.objective)
            assert "found no allocation within time_limit" in result.info["message"]
            continue
        assert problem.is_feasible(result.selected)
        assert result.lower_bound <= result.objective == result.upper_bound
        assert result.info["gap"] == pytest.approx(result.objective - result.lower_bound)


def test_readme_example():
    problem = ss.LayerAllocation(costs=[[0, 3, 5], [2, 4]], errors=[[4.0, 1.0, 0.0], [3.0, 0.0]], capacity=7)
    result = ss.solve(problem, "dp")
    assert result.selected == (1, 1) and result.objective == 1.0 and result.info["cost"] == {"cost": 7}
    assert enumerate_optimum(problem.costs, problem.errors, 7) == 1.0
