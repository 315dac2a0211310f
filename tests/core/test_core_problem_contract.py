"""The problem contract, checked over every registered solver on small reference instances.

Every kind declares ``sense`` and ``objective(selected)`` taking exactly ``Result.selected``;
every solver reports ``result.objective == problem.objective(result.selected)``, and its proven
bounds bracket the optimum on the right side of its answer. The reference optima come from
enumeration written here (not from the solvers).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

import sparsesel as ss

# cheap options so that the training and search solvers finish in a moment on these instances
QUICK = {
    "sequential_attention": {"epochs": 3},
    "group_regularized": {"epochs": 2, "batch_size": 16},
    "powerpropagation": {"epochs": 2, "batch_size": 16},
    "acdc": {"epochs": 2, "batch_size": 16},
    "sequential_attention_pp": {"epochs": 2, "batch_size": 16},
    "integrated_gradients": {"steps": 8},
    "greedy_pig": {"steps": 4},
    "simulation": {"n_reps": 2},
    "ptas": {"time_limit": 10.0},
    "ilp": {"time_limit": 10.0},
    "ilp_refine": {"time_limit": 10.0},
}


def feature_selection(loss):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 6))
    y = X[:, 1] - 2 * X[:, 4] + 0.3 * rng.normal(size=40)
    return ss.FeatureSelection(X, (y > 0).astype(float) if loss == "logistic" else y, k=2, loss=loss)


def core_shape():
    rng = np.random.default_rng(1)
    return ss.CoreShape.from_tensor(rng.normal(size=(4, 5, 3)), 40)


def tree_ranks():
    rng = np.random.default_rng(2)
    return ss.TreeNetworkRanks.tensor_train(rng.normal(size=(3, 4, 3)), 30)


def block_sparsification():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(32, 6)).astype(np.float32)
    Y = (X @ rng.normal(size=(6, 4))).astype(np.float32)
    torch.manual_seed(0)
    return ss.BlockSparsification(torch.nn.Linear(6, 4), (2, 3), density=0.5, min_blocks=1, data=(X, Y), loss="mse")


def attribution():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)).double().eval()
    return ss.Attribution(model, torch.linspace(0.2, 1.0, 5, dtype=torch.float64), k=2)


def attribution_batched():
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(5, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2)).double().eval()
    x = torch.stack([torch.linspace(0.2, 1.0, 5), torch.linspace(1.0, -0.5, 5)]).double()
    return ss.Attribution(model, x, target=[0, 1], k=2, batched=True)


def bag_design():
    return ss.BagDesign(400, 10, 1.0, 1.0, epsilon=1.0, clip=3.0, bag_sizes=(1, 2, 4))


def layer_allocation():
    costs = [[0, 3, 5, 9], [2, 4, 4], [0, 6]]
    errors = [[4.0, 2.0, 1.0, 0.0], [3.0, 1.5, 1.0], [2.0, 0.0]]
    levels = {"rank_fraction": [[0.25, 0.5, 0.75, 1.0], [0.4, 0.8, 1.0], [0.5, 1.0]],
              "kept_energy": [[0.6, 0.8, 0.9, 1.0], [0.7, 0.95, 1.0], [0.9, 1.0]]}
    return ss.LayerAllocation(costs, errors, 12, levels=levels)


def enumerated_optimum(problem):
    """The optimum of :meth:`objective` over every feasible decision (kinds small enough to enumerate)."""
    if isinstance(problem, ss.FeatureSelection):
        values = [problem.objective(s) for s in itertools.combinations(range(problem.n_features), problem.k)]
    elif isinstance(problem, (ss.CoreShape, ss.TreeNetworkRanks)):
        shapes = itertools.product(*[range(1, m + 1) for m in problem.max_ranks])
        values = [problem.objective(r) for r in shapes if problem.is_feasible(r)]
    elif isinstance(problem, ss.Attribution) and problem.batched:  # separable: the sum of per-example optima
        subsets = list(itertools.combinations(range(problem.n_features), problem.k))
        return sum(max(problem.example_objectives([s if e == b else subsets[0] for e in range(problem.n_examples)])[b]
                       for s in subsets) for b in range(problem.n_examples))
    elif isinstance(problem, ss.Attribution):
        values = [problem.objective(s) for s in itertools.combinations(range(problem.n_features), problem.k)]
    elif isinstance(problem, ss.LayerAllocation):
        picks = itertools.product(*[range(n) for n in problem.n_options])
        values = [problem.objective(p) for p in picks if problem.is_feasible(p)]
    elif isinstance(problem, ss.BagDesign):
        values = [problem.objective((k,)) for k in problem.bag_sizes]
    else:
        return None
    return min(values) if problem.sense == "minimize" else max(values)


INSTANCES = {
    "feature_selection_squared": lambda: feature_selection("squared"),
    "feature_selection_logistic": lambda: feature_selection("logistic"),
    "core_shape": core_shape,
    "tree_network_ranks": tree_ranks,
    "block_sparsification": block_sparsification,
    "attribution": attribution,
    "attribution_batched": attribution_batched,
    "bag_design": bag_design,
    "layer_allocation": layer_allocation,
}
CASES = [(name, solver) for name, make in INSTANCES.items() for solver in ss.solvers_for(make())]


def test_every_kind_declares_its_sense():
    senses = {type(make()).__name__: type(make()).sense for make in INSTANCES.values()}
    assert senses == {"FeatureSelection": "minimize", "CoreShape": "minimize", "TreeNetworkRanks": "minimize",
                      "BlockSparsification": "minimize", "Attribution": "maximize", "BagDesign": "minimize",
                      "LayerAllocation": "minimize"}


def test_every_bundled_solver_is_covered():
    covered = {solver for _, solver in CASES}
    bundled = {row.name for row in __import__("solvers").BUNDLED}
    assert bundled <= covered


@pytest.mark.parametrize("instance, solver", CASES)
def test_result_objective_is_the_problems_objective_at_selected(instance, solver):
    problem = INSTANCES[instance]()
    with threadpool_limits(1):
        result = ss.solve(problem, solver, **QUICK.get(solver, {}))
    assert result.status != "infeasible" and result.selected
    # a solver that retrains the weights (BlockSparsification) reports the objective at its own weights
    extra = {"model": result.info["model"]} if isinstance(problem, ss.BlockSparsification) else {}
    assert problem.objective(result.selected, **extra) == pytest.approx(result.objective, rel=1e-6, abs=1e-9)
    optimum = enumerated_optimum(problem)
    if isinstance(problem, ss.BagDesign) or optimum is None:
        return
    tol = 1e-7 * max(1.0, abs(optimum))
    if result.lower_bound is not None:
        assert result.lower_bound <= optimum + tol
    if result.upper_bound is not None:
        assert result.upper_bound >= optimum - tol
    if result.status == "optimal":
        assert result.objective == pytest.approx(optimum, rel=1e-6, abs=1e-9)
    if result.guarantee is not None:  # e.g. the PTAS: kept energy >= factor x optimal kept energy
        measure = getattr(problem, result.guarantee.of)
        values = [measure(r) for r in itertools.product(*[range(1, m + 1) for m in problem.max_ranks]) if problem.is_feasible(r)]
        assert measure(result.selected) >= result.guarantee.factor * max(values) - tol


def test_result_builds_infeasible_results_without_evaluating():
    problem = ss.CoreShape([[3.0, 1.0], [2.0, 1.0]], (2, 2), 3)  # the all-ones shape needs 5 entries
    result = ss.solve(problem, "ilp")
    assert result.status == "infeasible" and result.selected == () and math.isnan(result.objective)
    assert "all ranks 1" in result.info["message"]
    built = problem.result((), status="infeasible", message="x")
    assert math.isnan(built.objective) and built.info == {"message": "x"}


def test_objective_takes_exactly_result_selected_for_bags_and_blocks():
    bags = bag_design()
    result = ss.solve(bags, "formula")
    assert bags.objective(result.selected) == result.objective
    assert result.lower_bound == result.upper_bound == result.objective  # no risk target: the minimiser
    with pytest.raises(ValueError, match=r"selected must hold one bag size, \(k,\)"):
        bags.objective((1, 2))
    blocks = block_sparsification()
    pruned = ss.solve(blocks, "magnitude")  # epochs=0: the problem's own weights
    assert blocks.objective(pruned.selected) == pytest.approx(pruned.objective, rel=1e-6)
    with pytest.raises(ValueError, match="selected has no blocks for the prunable weight"):
        blocks.objective(())
