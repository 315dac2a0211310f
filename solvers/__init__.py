"""The bundled solvers, as a table the registry reads without importing them.

Each row of :data:`BUNDLED` names a solver, the problem kinds it solves (dotted class paths),
the module that registers it (with :func:`sparsesel.register_solver`, imported the first time
the solver is used), a one-line description, and an optional ``supports(problem)``
predicate. The predicates live here, not in the solver modules, so that
:func:`sparsesel.solvers_for` can filter an instance without importing any solver: they
only read the problem's fields (``True``, or a string saying why the solver refuses).
A test checks that every module registers exactly its rows. Third-party packages add
solvers through the ``sparsesel.solvers`` entry-point group instead.
"""

from __future__ import annotations

from typing import Any

from sparsesel.registry import SolverEntry

_FS = "sparsesel.problems.feature_selection.FeatureSelection"
_CORE = "sparsesel.problems.core_shape.CoreShape"
_TREE = "sparsesel.problems.tree_network_ranks.TreeNetworkRanks"
_BLOCKS = "sparsesel.problems.block_sparsification.BlockSparsification"
_ATTRIBUTION = "sparsesel.problems.attribution.Attribution"
_BAGS = "sparsesel.problems.bag_design.BagDesign"
_LAYERS = "sparsesel.problems.layer_allocation.LayerAllocation"


# ----- supports predicates (cheap: they read fields and import nothing heavy) ---------------
def squared_loss(problem: Any) -> bool | str:
    if problem.loss != "squared":
        return (f"omp supports loss='squared' only (got loss={problem.loss!r}); for loss='logistic' use "
                "greedy_forward (exact greedy refits) or sequential_attention")
    return True


def dense_design(problem: Any) -> bool | str:
    """Solvers that need a dense ``X`` refuse a scipy sparse one (``FeatureSelection.SPARSE_SOLVERS`` take it)."""
    if problem.is_sparse:
        from sparsesel.design_matrix import sparse_description
        from sparsesel.problems.feature_selection import SPARSE_SOLVERS

        return (f"it needs a dense X, got a scipy sparse matrix ({sparse_description(problem.X)}); use one of "
                f"{', '.join(SPARSE_SOLVERS)}, which take sparse X without densifying it, or pass X.toarray() if "
                "the dense array fits in memory")
    return True


def has_tensor(problem: Any) -> bool | str:
    if problem.tensor is None:
        return "it needs the tensor itself (true Tucker errors); build the problem with CoreShape.from_tensor(X, budget)"
    return True


def single_linear_least_squares(problem: Any) -> bool | str:
    """The block brute force refits a single ``nn.Linear`` by least squares: mse loss and ``(X, y)`` data."""
    from torch import nn  # a BlockSparsification exists, so torch is imported already

    if len(problem.params) != 1:
        return f"it needs exactly one prunable weight, got {list(problem.params)}"
    kinds = [m for m in problem.model.modules() if not isinstance(m, nn.Sequential)]
    if len(kinds) != 1 or not isinstance(kinds[0], nn.Linear) or not problem.params[0].endswith("weight"):
        return ("it is an exact oracle for linear least squares only: the model must be a single nn.Linear "
                f"(optionally inside nn.Sequential), got {sorted({type(m).__name__ for m in kinds})}")
    if problem.loss != "mse" or not isinstance(problem.data, tuple):
        return (f"it needs loss='mse' and data=(X, y), got loss={problem.loss!r} and data of type "
                f"{type(problem.data).__name__}")
    return True


def _units_message(problem: Any, solver: str) -> str:
    return (f"{solver} handles one cost unit, the problem has {problem.n_units} ({', '.join(problem.units)}); "
            "use cp_sat, brute_force, uniform or energy")


def dp_supports(problem: Any) -> bool | str:
    if problem.n_units != 1:
        return _units_message(problem, "dp")
    if not problem.integer_costs:
        return "dp needs integer costs (below 2**53); scale them (e.g. latencies to microseconds) and round"
    return True


def cp_sat_supports(problem: Any) -> bool | str:
    if not problem.integer_costs:
        return "cp_sat needs integer costs (below 2**53); scale them (e.g. latencies to microseconds) and round"
    return True


def greedy_supports(problem: Any) -> bool | str:
    return True if problem.n_units == 1 else _units_message(problem, "greedy")


def _rule_supports(rule: str, level: str) -> Any:
    def supports(problem: Any) -> bool | str:
        import math

        if level not in problem.levels:
            return (f"the {rule} rule reads levels[{level!r}], which this LayerAllocation does not have "
                    f"(it has {sorted(problem.levels) or 'no levels'})")
        empty = [problem.names[l] for l, values in enumerate(problem.levels[level])
                 if all(math.isnan(v) for v in values)]
        if empty:
            return f"levels[{level!r}] is NaN for every option of {empty[:5]}: the {rule} rule has nothing to pick there"
        return True

    supports.__name__ = f"{rule}_supports"
    return supports


def _row(name: str, kinds: tuple[str, ...], module: str, description: str, supports: Any = None) -> SolverEntry:
    return SolverEntry(name, kinds, f"solvers.{module}", description, supports)


#: Every bundled solver: the registry's table.
BUNDLED: tuple[SolverEntry, ...] = (
    # feature selection
    _row("omp", (_FS,), "omp", "Orthogonal Matching Pursuit (incremental Cholesky; equals scikit-learn's OMP) — squared loss", squared_loss),
    _row("greedy_forward", (_FS,), "greedy_forward", "forward selection by the exact loss decrease (rank-one updates for squared loss, refits for logistic)"),
    _row("lasso", (_FS,), "lasso", "baseline: support of the l1 path (scikit-learn lars_path / l1 logistic) with k features"),
    _row("sequential_attention", (_FS,), "sequential_attention", "Sequential Attention (ICLR 2023): linear model solved exactly (OMP's picks); logistic/MLP: one training pass, one pick per segment (torch)", dense_design),
    _row("brute_force", (_FS,), "brute_force_features", "exhaustive search over all k-subsets (exact; small d and k only)", dense_design),
    # tensor ranks
    _row("ilp", (_CORE, _TREE), "tucker_ilp", "exact surrogate optimum: CP-SAT (exact core products) or exact enumeration, exact integer tie check"),
    _row("ptas", (_CORE,), "tucker_ptas", "the paper's PTAS: (1+ε) grid over the core/factor split, one ILP per guess"),
    _row("ilp_refine", (_CORE,), "tucker_refine", "exact surrogate optimum, HOSVD-table + greedy candidates re-ranked by one HOOI run, raced by HOOI sweeps; never worse than the optimum", has_tensor),
    _row("greedy_tucker", (_CORE,), "tucker_greedy", "paper's baseline: from all ones, +1 to the mode whose HOOI error falls most", has_tensor),
    _row("greedy_surrogate", (_CORE, _TREE), "tucker_baselines", "from all ones, +1 to the rank with the largest next σ² that fits"),
    _row("bang_for_buck", (_CORE, _TREE), "tucker_baselines", "from all ones, +1 to the rank with the most σ² per added entry"),
    _row("uniform", (_CORE, _TREE), "tucker_baselines", "the same fraction t of every maximal rank, largest t that fits"),
    _row("energy_threshold", (_CORE, _TREE), "tucker_baselines", "per-mode energy cut: smallest ranks keeping a fraction τ, largest τ that fits"),
    _row("brute_force", (_CORE, _TREE), "tucker_brute_force", "enumerate every rank tuple (oracle; small problems only)"),
    # block sparsification
    _row("magnitude", (_BLOCKS,), "block_magnitude", "keep the blocks of largest norm: one-shot or gradual (cubic) schedule, then fine-tune"),
    _row("group_regularized", (_BLOCKS,), "block_group_regularized", "train with a group penalty (lasso, log, MCP, SCAD, lq) on block norms by proximal gradient, keep the largest blocks, fine-tune"),
    _row("powerpropagation", (_BLOCKS,), "block_powerpropagation", "block Powerpropagation (W_b = V_b·‖V_b‖^(alpha-1)), keep the largest blocks, fine-tune"),
    _row("acdc", (_BLOCKS,), "block_acdc", "ACDC: alternating dense / block-sparse phases (magnitude top-k), then sparse fine-tune"),
    _row("sequential_attention_pp", (_BLOCKS,), "block_sequential_attention_pp", "SequentialAttention++: block attention logits + ACDC phases with gradual sparsification (Alg. 1)"),
    _row("brute_force", (_BLOCKS,), "block_brute_force", "exact: every block subset of a single nn.Linear with mse loss, each refit by least squares", single_linear_least_squares),
    # attribution
    _row("integrated_gradients", (_ATTRIBUTION,), "attribution_ig", "integrated gradients (Sundararajan et al. 2017) with Captum's quadrature rules; top-k features"),
    _row("gradient", (_ATTRIBUTION,), "attribution_ig", "plain gradient at x (saliency map); top-k features"),
    _row("gradient_x_input", (_ATTRIBUTION,), "attribution_ig", "gradient times input x·∂f/∂x (Captum's InputXGradient); top-k"),
    _row("random", (_ATTRIBUTION,), "attribution_ig", "uniformly random ranking (a floor for every metric)"),
    _row("greedy_pig", (_ATTRIBUTION,), "attribution_greedy_pig", "Greedy PIG: rounds of IG, each fixes its top-scoring features at x in the baseline"),
    _row("brute_force", (_ATTRIBUTION,), "attribution_brute_force", "every k-subset evaluated; the best model output G(S) (tiny models only; the test oracle)"),
    # bag design
    _row("formula", (_BAGS,), "bag_design", "bag size from the proportional-regime risk formula (exhaustive over candidates)"),
    _row("simulation", (_BAGS,), "bag_design", "bag size from Monte Carlo on Gaussian designs of the problem's size (checks the formula)"),
    # layer allocation (the multiple-choice knapsack of network compression)
    _row("dp", (_LAYERS,), "allocation_dp", "exact: dynamic programming over the integer capacity (one cost unit; numba)", dp_supports),
    _row("cp_sat", (_LAYERS,), "allocation_cp_sat", "exact on OR-tools CP-SAT (integer costs, any number of units; errors scaled to 2^-40 of the total)", cp_sat_supports),
    _row("greedy", (_LAYERS,), "allocation_greedy", "convex-hull greedy of the LP relaxation: best error decrease per unit cost first (one cost unit)", greedy_supports),
    _row("uniform", (_LAYERS,), "allocation_rules", "the same fraction of every maximal rank (levels['rank_fraction']), largest that fits", _rule_supports("uniform", "rank_fraction")),
    _row("energy", (_LAYERS,), "allocation_rules", "the same kept fraction of spectral energy in every layer (levels['kept_energy']), largest that fits", _rule_supports("energy", "kept_energy")),
    _row("brute_force", (_LAYERS,), "allocation_brute_force", "every choice enumerated (the test oracle; small instances only)"),
)
