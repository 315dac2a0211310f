"""Hostile numbers and odd arguments (issue 17, item 5 and the argument cases).

* Feature selection on columns of magnitude 1e±200 (all of them, or one among ordinary columns):
  every solver gives the support an independent reference gives (scikit-learn on rescaled
  columns, a brute force / greedy written here with numpy's lstsq), and the reported objective is
  the training loss on the original data; what cannot be represented is a clear error.
* ``ptas`` honours one global time limit.
* ``select`` / ``aggregate`` / ``BlockSparsification`` argument cases.
"""

from __future__ import annotations

import itertools
import json
import time

import numpy as np
import pytest
import torch
from reliability_helpers import expect_clear_error, run_cli
from sklearn.linear_model import OrthogonalMatchingPursuit, lars_path

import sparsesel as ss

N_ROWS, N_COLS, K = 60, 7, 3
SUPPORT = (1, 4, 6)


def _instance() -> tuple[np.ndarray, np.ndarray]:
    """Ordinary data: the response depends on columns 1, 4 and 6 (strong signal, little noise)."""
    rng = np.random.default_rng(17)
    X = rng.standard_normal((N_ROWS, N_COLS))
    y = 2.0 * X[:, 1] - 1.5 * X[:, 4] + 1.0 * X[:, 6] + 0.1 * rng.standard_normal(N_ROWS)
    return X, y


def _lstsq_loss(X: np.ndarray, y: np.ndarray, subset) -> float:
    """Reference refit loss (intercept, mean squared residual) on ordinary-scale data."""
    A = np.column_stack([np.ones(len(y)), X[:, list(subset)]])
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    residual = y - A @ coef
    return float(residual @ residual / len(y))


def _brute_force(X, y, k):
    return min(itertools.combinations(range(X.shape[1]), k), key=lambda s: _lstsq_loss(X, y, s))


def _greedy(X, y, k):
    chosen: list[int] = []
    for _ in range(k):
        rest = [j for j in range(X.shape[1]) if j not in chosen]
        chosen.append(min(rest, key=lambda j: _lstsq_loss(X, y, chosen + [j])))
    return chosen


def _sklearn_omp(X, y, k):
    model = OrthogonalMatchingPursuit(n_nonzero_coefs=k).fit(X, y)
    return set(np.flatnonzero(model.coef_).tolist())


def _lars_support(X, y, k):
    """Support of the first lasso-path segment with k active features (scikit-learn)."""
    Xc, yc = X - X.mean(axis=0), y - y.mean()
    _, _, coefs = lars_path(Xc, yc, method="lasso")
    for i in range(coefs.shape[1] - 1):
        active = np.flatnonzero(coefs[:, i] + coefs[:, i + 1])
        if active.size == k:
            return set(active.tolist())
    raise AssertionError("no segment with k features")


# ------------------------------------------------------------------ uniform extreme scales
SCALE_INVARIANT = ["greedy_forward", "brute_force", "sequential_attention"]
ALL_FS_SOLVERS = ["omp", "lasso", *SCALE_INVARIANT]


def _reference_support(solver, X, y, k):
    """An independent reference for ``solver`` on ordinary-scale data."""
    if solver == "omp":
        return _sklearn_omp(X, y, k)
    if solver == "lasso":
        return _lars_support(X, y, k)
    if solver == "greedy_forward":
        return set(_greedy(X, y, k))
    return set(_brute_force(X, y, k))  # brute force; Sequential Attention on this clear instance


@pytest.mark.reliability("right_result")
@pytest.mark.parametrize("scale", [1e200, 1e-200], ids=["1e200", "1e-200"])
@pytest.mark.parametrize("solver", ALL_FS_SOLVERS)
def test_every_column_scaled_to_an_extreme_gives_the_unscaled_answer(solver, scale):
    X, y = _instance()
    result = ss.solve(ss.FeatureSelection(X * scale, y, K), solver)
    assert set(result.selected) == _reference_support(solver, X, y, K)
    assert result.objective == pytest.approx(_lstsq_loss(X, y, result.selected), rel=1e-9)
    assert np.isfinite(result.info.get("coef", np.zeros(1))).all()


# ------------------------------------------------------------------ one extreme column among ordinary ones
MIXED = {
    "huge-in-support": (1, 1e200),
    "huge-not-in-support": (0, 1e200),
    "tiny-in-support": (4, 1e-200),
    "tiny-not-in-support": (0, 1e-200),
}


def _with_column_scaled(X, column, factor):
    out = X.copy()
    out[:, column] *= factor
    return out


@pytest.mark.reliability("right_result")
@pytest.mark.parametrize("case", list(MIXED))
@pytest.mark.parametrize("solver", SCALE_INVARIANT)
def test_one_extreme_column_does_not_change_a_scale_free_solver(solver, case):
    """greedy / brute force / Sequential Attention (standardised) pick as on the ordinary columns."""
    column, factor = MIXED[case]
    X, y = _instance()
    result = ss.solve(ss.FeatureSelection(_with_column_scaled(X, column, factor), y, K), solver)
    assert set(result.selected) == _reference_support(solver, X, y, K)
    assert result.objective == pytest.approx(_lstsq_loss(X, y, result.selected), rel=1e-9)


@pytest.mark.reliability("right_result")
@pytest.mark.parametrize("case", list(MIXED))
@pytest.mark.parametrize("solver", ["omp", "lasso"])
def test_one_extreme_column_picks_as_in_exact_arithmetic(solver, case):
    """OMP and the lasso path pick by unnormalised correlations (as scikit-learn's): a huge column
    comes first, a tiny one never. In exact arithmetic the picks are the same for every factor
    beyond the point where that holds; scikit-learn at 2^±20 and 2^±30 gives the reference."""
    column, factor = MIXED[case]
    X, y = _instance()
    reference = _sklearn_omp if solver == "omp" else _lars_support
    moderate = [reference(_with_column_scaled(X, column, 2.0 ** (e if factor > 1 else -e)), y, K) for e in (20, 30)]
    assert moderate[0] == moderate[1]
    result = ss.solve(ss.FeatureSelection(_with_column_scaled(X, column, factor), y, K), solver)
    assert set(result.selected) == moderate[0]
    # the reported objective is the refit loss on the data as given (scale-free: compare on X)
    assert result.objective == pytest.approx(_lstsq_loss(X, y, result.selected), rel=1e-9)


@pytest.mark.reliability("right_result")
@pytest.mark.parametrize("factors", [(1e10, 1e-10), (1e200, 1e-200)], ids=["1e10-and-1e-10", "1e200-and-1e-200"])
def test_objective_of_columns_of_very_different_scales_is_the_true_refit_loss(factors):
    """numpy's lstsq cuts singular values below eps·max: unscaled, a 1e-10 column beside a 1e10 one
    counted as zero. The objective must be the loss of the real least-squares fit."""
    X, y = _instance()
    scaled = X.copy()
    scaled[:, 1] *= factors[0]
    scaled[:, 4] *= factors[1]
    problem = ss.FeatureSelection(scaled, y, K)
    assert problem.objective([1, 4, 6]) == pytest.approx(_lstsq_loss(X, y, [1, 4, 6]), rel=1e-9)
    fit = problem.refit([1, 4, 6])
    reference, *_ = np.linalg.lstsq(np.column_stack([np.ones(N_ROWS), X[:, [1, 4, 6]]]), y, rcond=None)
    np.testing.assert_allclose(fit["coef"] * np.array([factors[0], factors[1], 1.0]), reference[1:], rtol=1e-8)


@pytest.mark.reliability("right_result")
@pytest.mark.parametrize("solver", ["omp", "greedy_forward", "brute_force"])
def test_a_response_scaled_by_1e100_scales_the_loss_by_1e200(solver):
    X, y = _instance()
    result = ss.solve(ss.FeatureSelection(X, y * 1e100, K), solver)
    assert set(result.selected) == set(SUPPORT)
    assert result.objective == pytest.approx(1e200 * _lstsq_loss(X, y, SUPPORT), rel=1e-9)


# ------------------------------------------------------------------ what cannot be represented: clear errors
@pytest.mark.reliability("clear_error")
@pytest.mark.parametrize(
    ("factor", "message"), [(1e200, "overflows"), (1e-200, "underflows")], ids=["y-1e200", "y-1e-200"]
)
def test_a_response_whose_squared_loss_leaves_float64_is_refused(factor, message):
    X, y = _instance()
    with pytest.raises(ValueError, match=rf"y spreads over .*{message} float64.*rescale y"):
        ss.FeatureSelection(X, y * factor, K)


@pytest.mark.reliability("clear_error")
def test_entries_beyond_1e250_are_refused_naming_the_column():
    X, y = _instance()
    X[:, 5] *= 1e300
    with pytest.raises(ValueError, match=r"X has entries of magnitude .*\(column 5\); values beyond 1e\+250"):
        ss.FeatureSelection(X, y, K)


@pytest.mark.reliability("clear_error")
def test_logistic_loss_refuses_columns_spread_beyond_its_reliable_range():
    X, y = _instance()
    labels = (y > 0).astype(int)
    X[:, 2] *= 1e8
    with pytest.raises(ValueError, match=r"loss='logistic': column\(s\) 2 of X spread over .*standardise"):
        ss.FeatureSelection(X, labels, K, loss="logistic")


@pytest.mark.reliability("right_result")
def test_logistic_refit_at_the_largest_accepted_spread_is_the_true_optimum():
    """At spread ~1e6 the ridge-logistic refit still matches an independent minimiser (Nelder–Mead)."""
    from scipy.optimize import minimize
    from scipy.special import log_expit

    X, y = _instance()
    labels = (y > 0).astype(int)
    column = X[:, 1] / np.max(np.abs(X[:, 1] - X[:, 1].mean())) * 0.9e6
    problem = ss.FeatureSelection(np.column_stack([column, X[:, 2]]), labels, 1, loss="logistic")
    sign = 2 * labels - 1

    def penalised(p):  # the problem's fit objective: mean log-loss + (alpha/2)·b²
        return -np.mean(log_expit(sign * (column * p[0] + p[1]))) + problem.alpha / 2 * p[0] ** 2

    # search in the column's natural units: b = p0 / 1e6
    best = minimize(lambda q: penalised([q[0] / 1e6, q[1]]), [0.0, 0.0], method="Nelder-Mead",
                    options={"xatol": 1e-12, "fatol": 1e-15, "maxiter": 20000})
    b, a = best.x[0] / 1e6, best.x[1]
    reference = -np.mean(log_expit(sign * (column * b + a)))
    assert problem.objective([0]) == pytest.approx(reference, abs=1e-7)


@pytest.mark.reliability("clear_error")
@pytest.mark.parametrize("scale", [1e200, 1e-200, 1e60], ids=["1e200", "1e-200", "1e60"])
def test_sequential_attention_on_raw_extreme_columns_refuses_its_stalled_training(scale):
    """The trained linear model (inner='adam'); the exact one (the default) is checked further down."""
    X, y = _instance()
    with pytest.raises(ValueError, match=r"sequential_attention: training (diverged|made no progress).*standardize=True"):
        ss.solve(ss.FeatureSelection(X * scale, y, K), "sequential_attention", standardize=False, inner="adam")


@pytest.mark.reliability("right_result")
def test_select_on_a_csv_with_a_1e200_column_gives_the_reference_support(tmp_path):
    X, y = _instance()
    X = _with_column_scaled(X, 1, 1e200)
    path = tmp_path / "wide.csv"
    header = ",".join([f"x{j}" for j in range(N_COLS)] + ["y"])
    rows = [",".join(repr(float(v)) for v in [*row, target]) for row, target in zip(X, y)]
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    run = run_cli(["select", "--data", path, "--target", "y", "--k", K, "--solver", "greedy_forward", "--json"])
    assert run.status == 0, run.err
    payload = json.loads(run.out)
    assert set(payload["selected"]) == set(_greedy(_instance()[0], y, K))
    assert payload["objective"] == pytest.approx(_lstsq_loss(_instance()[0], y, payload["selected"]), rel=1e-9)


# ------------------------------------------------------------------ sparse X at extreme column scales
SPARSE_FS_SOLVERS = ["omp", "greedy_forward", "lasso"]


def _sparse_instance() -> tuple[np.ndarray, np.ndarray]:
    """``_instance()`` with about half of X's entries set to zero (a dense array; tests make it sparse)."""
    X, y = _instance()
    keep = np.random.default_rng(5).random(X.shape) < 0.5
    X = np.where(keep, X, 0.0)
    y = 2.0 * X[:, 1] - 1.5 * X[:, 4] + 1.0 * X[:, 6] + 0.1 * np.random.default_rng(6).standard_normal(N_ROWS)
    return X, y


def _sparse_reference(solver, X, y, k, column=None, factor=1.0):
    """What ``solver`` must select on ``X`` with ``column`` scaled by ``factor`` (independent of the solver):
    greedy is scale-free (numpy lstsq on X); OMP and the lasso path pick by unnormalised correlations, so
    their reference is scikit-learn at the moderate factors 2^±20 and 2^±30, which must agree."""
    if solver == "greedy_forward" or column is None:
        return set(_greedy(X, y, k)) if solver == "greedy_forward" else _reference_support(solver, X, y, k)
    reference = _sklearn_omp if solver == "omp" else _lars_support
    moderate = [reference(_with_column_scaled(X, column, 2.0 ** (e if factor > 1 else -e)), y, k) for e in (20, 30)]
    assert moderate[0] == moderate[1]
    return moderate[0]


@pytest.mark.reliability("right_result")
@pytest.mark.parametrize("case", list(MIXED))
@pytest.mark.parametrize("solver", SPARSE_FS_SOLVERS)
def test_sparse_x_with_one_extreme_column_gives_the_dense_answer(solver, case):
    """A scipy sparse X with one column scaled by 1e±200: scaled as X·diag(1/s) (never densified), the
    implicit centring on the scaled columns and means picks and scores as the dense path and the reference."""
    import scipy.sparse as sp

    column, factor = MIXED[case]
    X, y = _sparse_instance()
    extreme = _with_column_scaled(X, column, factor)
    sparse = ss.solve(ss.FeatureSelection(sp.csr_array(extreme), y, K), solver)
    dense = ss.solve(ss.FeatureSelection(extreme, y, K), solver)
    assert list(sparse.selected) == list(dense.selected)
    assert set(sparse.selected) == _sparse_reference(solver, X, y, K, column, factor)
    assert sparse.objective == pytest.approx(_lstsq_loss(X, y, sparse.selected), rel=1e-9)
    assert sparse.objective == pytest.approx(dense.objective, rel=1e-12)


@pytest.mark.reliability("right_result")
@pytest.mark.parametrize("scale", [1e200, 1e-200], ids=["1e200", "1e-200"])
@pytest.mark.parametrize("fit_intercept", [True, False], ids=["intercept", "no-intercept"])
@pytest.mark.parametrize("solver", SPARSE_FS_SOLVERS)
def test_sparse_x_with_every_column_at_an_extreme_gives_the_unscaled_answer(solver, fit_intercept, scale):
    import scipy.sparse as sp

    X, y = _sparse_instance()
    result = ss.solve(ss.FeatureSelection(sp.csc_array(X * scale), y, K, fit_intercept=fit_intercept), solver)
    unscaled = ss.solve(ss.FeatureSelection(X, y, K, fit_intercept=fit_intercept), solver)
    assert list(result.selected) == list(unscaled.selected)
    assert result.objective == pytest.approx(unscaled.objective, rel=1e-9)
    if fit_intercept:
        assert set(result.selected) == _sparse_reference(solver, X, y, K)


@pytest.mark.reliability("right_result")
@pytest.mark.parametrize("storage", ["dense", "sparse"])
@pytest.mark.parametrize("solver", SPARSE_FS_SOLVERS)
def test_a_constant_1e200_column_is_ignored(solver, storage):
    """A column equal to 1e200 in every row (sparse: stored in full) centres to exactly zero. Its computed
    mean rounds (60 × 1e200 / 60 ≠ 1e200) and Xᵀr − μ·Σr rounds to ~1e184: neither may count as a signal."""
    import scipy.sparse as sp

    X, y = _sparse_instance()
    with_constant = X.copy()
    with_constant[:, 0] = 1e200
    design = sp.csc_array(with_constant) if storage == "sparse" else with_constant
    result = ss.solve(ss.FeatureSelection(design, y, K), solver)
    assert 0 not in result.selected
    assert set(result.selected) == _sparse_reference(solver, X, y, K)
    assert result.objective == pytest.approx(_lstsq_loss(X, y, result.selected), rel=1e-9)


@pytest.mark.reliability("clear_error")
def test_sparse_x_with_entries_beyond_1e250_is_refused_naming_the_column():
    import scipy.sparse as sp

    X, y = _sparse_instance()
    X[:, 3] *= -1e300
    with pytest.raises(ValueError, match=r"X has entries of magnitude .*\(column 3\); values beyond 1e\+250"):
        ss.FeatureSelection(sp.csr_array(X), y, K)


@pytest.mark.reliability("clear_error")
def test_sparse_x_with_logistic_loss_refuses_a_column_spread_beyond_1e6():
    import scipy.sparse as sp

    X, y = _sparse_instance()
    X[:, 2] *= 1e8
    with pytest.raises(ValueError, match=r"loss='logistic': column\(s\) 2 of X spread over .*standardise"):
        ss.FeatureSelection(sp.csr_array(X), (y > 0).astype(int), K, loss="logistic")


@pytest.mark.reliability("right_result")
@pytest.mark.parametrize("case", [case for case, (_, factor) in MIXED.items() if factor < 1])
def test_sparse_x_logistic_lasso_with_a_1e_minus_200_column_matches_its_standardised_path(case):
    """Logistic lasso standardises each column (2^-e first, then the std): a column at 1e-200 must give
    the support it gives at its ordinary scale (the sparse path scales, not centres: compare sparse to sparse).
    Columns at 1e200 are refused for the logistic loss (see the clear-error case)."""
    import scipy.sparse as sp

    column, factor = MIXED[case]
    X, y = _sparse_instance()
    labels = (y > 0).astype(int)
    tiny = ss.solve(ss.FeatureSelection(sp.csr_array(_with_column_scaled(X, column, factor)), labels, K,
                                        loss="logistic"), "lasso")
    plain = ss.solve(ss.FeatureSelection(sp.csr_array(X), labels, K, loss="logistic"), "lasso")
    assert set(tiny.selected) == set(plain.selected)


# ------------------------------------------------------------------ exact Sequential Attention on raw columns
@pytest.mark.reliability("right_result")
@pytest.mark.parametrize("case", list(MIXED))
def test_exact_sequential_attention_on_raw_columns_picks_like_omp_at_any_scale(case):
    """inner='exact', standardize=False, ridge=None is OMP on X: with one column at 1e±200 it picks what
    OMP picks in exact arithmetic (scikit-learn at 2^±20 and 2^±30), in the same order."""
    column, factor = MIXED[case]
    X, y = _instance()
    moderate = [OrthogonalMatchingPursuit(n_nonzero_coefs=K).fit(
        _with_column_scaled(X, column, 2.0 ** (e if factor > 1 else -e)), y) for e in (20, 30)]
    supports = [set(np.flatnonzero(model.coef_).tolist()) for model in moderate]
    assert supports[0] == supports[1]
    result = ss.solve(ss.FeatureSelection(_with_column_scaled(X, column, factor), y, K), "sequential_attention",
                      standardize=False)
    assert set(result.selected) == supports[0]
    assert list(result.selected) == list(ss.solve(ss.FeatureSelection(_with_column_scaled(X, column, factor), y, K),
                                                  "omp").selected)


@pytest.mark.reliability("right_result")
@pytest.mark.parametrize(
    ("scale", "ridge"), [(1e200, None), (1e-200, None), (1e-200, 1.0)], ids=["1e200", "1e-200", "1e-200-ridge-1"]
)
def test_exact_sequential_attention_on_uniformly_scaled_raw_columns(scale, ridge):
    """Every column times 1e±200 with standardize=False: ridge=None is scale-free (OMP's order on X).
    ridge=1 on columns of 1e-200 is, in float64, the limit ridge → ∞: (I + AAᵀ/λ')⁻¹r rounds to r."""
    X, y = _instance()
    result = ss.solve(ss.FeatureSelection(X * scale, y, K), "sequential_attention", standardize=False, ridge=ridge)
    order = OrthogonalMatchingPursuit(n_nonzero_coefs=K).fit(X, y)
    assert set(result.selected) == set(np.flatnonzero(order.coef_).tolist())
    assert list(result.selected) == list(ss.solve(ss.FeatureSelection(X, y, K), "omp").selected)


@pytest.mark.reliability("clear_error")
@pytest.mark.parametrize("case", ["1e200-uniform", "1e200-and-1e-200"])
def test_exact_sequential_attention_refuses_a_finite_ridge_it_cannot_represent(case):
    """standardize=False, ridge=1: on columns of 1e200 the ridge is below float64's range next to the
    squared columns (the limit ridge → 0); columns 1e400 apart cannot share one ridge system."""
    X, y = _instance()
    if case == "1e200-uniform":
        extreme = X * 1e200
    else:
        extreme = _with_column_scaled(_with_column_scaled(X, 1, 1e200), 4, 1e-200)
    with pytest.raises(ValueError, match=r"inner='exact', standardize=False, ridge=1\).*leaves float64.*"
                                         r"standardize=True, ridge=None"):
        ss.solve(ss.FeatureSelection(extreme, y, K), "sequential_attention", standardize=False, ridge=1.0)


# ------------------------------------------------------------------ ptas: one global time limit
def _slow_core_shape() -> ss.CoreShape:
    """Three modes of 40 with flat random spectra: at epsilon 0.01 the scheme solves ~2,800 ILPs."""
    rng = np.random.default_rng(0)
    spectra = [np.sort(rng.random(40))[::-1] ** 2 for _ in range(3)]
    return ss.CoreShape(spectra, (40, 40, 40), budget=4000)


@pytest.mark.reliability("right_result")
def test_ptas_with_a_small_epsilon_stops_at_its_global_time_limit():
    problem = _slow_core_shape()
    limit = 1.0
    start = time.perf_counter()
    result = ss.solve(problem, "ptas", epsilon=0.01, time_limit=limit)
    elapsed = time.perf_counter() - start
    assert elapsed < limit + 5.0  # loose: a behaviour test, not a speed goal
    assert result.status == "time_limit"
    assert result.guarantee is None and result.lower_bound is None and result.upper_bound is None
    assert result.info["ilps_skipped"] > 0
    # a feasible answer, checked against the budget with the size written out here
    r = result.selected
    assert r[0] * r[1] * r[2] + 40 * sum(r) <= problem.budget
    assert result.objective == pytest.approx(sum(float(np.sum(problem.energies[g][r[g]:])) for g in range(3)))


@pytest.mark.reliability("right_result")
def test_ptas_without_a_limit_keeps_its_guarantee():
    """No limit (inf): the whole scheme runs; its (1 − ε) factor holds against exhaustive search."""
    problem = _slow_core_shape()
    epsilon = 0.5
    result = ss.solve(problem, "ptas", epsilon=epsilon, time_limit=float("inf"))
    assert result.status == "approximate"
    assert result.guarantee.factor == 1 - epsilon and result.guarantee.of == "kept_energy"
    total = sum(float(np.sum(e)) for e in problem.energies)
    best_kept = max(
        total - sum(float(np.sum(problem.energies[g][r[g]:])) for g in range(3))
        for r in itertools.product(range(1, 41), repeat=3)
        if r[0] * r[1] * r[2] + 40 * sum(r) <= problem.budget
    )
    assert total - result.objective >= (1 - epsilon) * best_kept - 1e-12


@pytest.mark.reliability("right_result")
def test_core_shape_cli_reports_the_ptas_time_limit(tmp_path):
    tensor = tmp_path / "t.npy"
    np.save(tensor, np.random.default_rng(3).standard_normal((40, 40, 40)))
    start = time.perf_counter()
    run = run_cli(["core-shape", "--tensor", tensor, "--budget", "4000", "--solver", "ptas", "--epsilon", "0.01",
                   "--time-limit", "1", "--json"])
    assert time.perf_counter() - start < 1 + 10.0
    assert run.status == 0, run.err
    report = json.loads(run.out)
    assert report["status"] == "time_limit" and report["size"] <= 4000 and report["guarantee"] is None


# ------------------------------------------------------------------ argument cases
@pytest.mark.reliability("clear_error")
@pytest.mark.parametrize("target", ["y", "a"])
def test_select_refuses_a_csv_with_a_repeated_column_name(tmp_path, target):
    path = tmp_path / "dup.csv"
    path.write_text("a,y,b,y,a\n1,2,3,4,5\n2,1,4,3,1\n3,3,5,1,2\n4,0,1,2,0\n5,1,2,2,3\n")
    expect_clear_error(["select", "--data", path, "--target", target, "--k", "1"], "repeats column name",
                       "'y' (2 times)", "'a' (2 times)")


@pytest.mark.reliability("clear_error")
def test_select_refuses_an_npz_with_repeated_feature_names(tmp_path):
    path = tmp_path / "dup.npz"
    rng = np.random.default_rng(0)
    np.savez(path, X=rng.standard_normal((10, 3)), y=rng.standard_normal(10), feature_names=np.array(["u", "v", "u"]))
    expect_clear_error(["select", "--data", path, "--k", "1"], "feature_names repeats", "'u' (2 times)")


@pytest.mark.reliability("clear_error")
def test_aggregate_refuses_clip_without_epsilon(tmp_path):
    expect_clear_error(["aggregate", "--data", "builtin:diabetes", "--bag-size", "10", "--clip", "0,300",
                        "--out", tmp_path / "p.png"], "--clip 0,300 needs --epsilon")
    assert not (tmp_path / "p.png").exists()


@pytest.mark.reliability("clear_error")
def test_aggregate_refuses_clip_for_classification(tmp_path):
    expect_clear_error(["aggregate", "--data", "builtin:iris", "--bag-size", "5", "--epsilon", "1", "--clip", "0,1",
                        "--out", tmp_path / "p.png"], "--clip applies to regression")


@pytest.mark.reliability("clear_error")
@pytest.mark.parametrize("clip", ["nan,1", "-inf,inf", "3,1", "1", "a,b"])
def test_aggregate_refuses_a_bad_clip_range(tmp_path, clip):
    expect_clear_error(["aggregate", "--data", "builtin:diabetes", "--bag-size", "10", "--epsilon", "1",
                        f"--clip={clip}", "--out", tmp_path / "p.png"], "--clip")


@pytest.mark.reliability("clear_error")
def test_integer_labels_with_mse_on_a_multi_output_model_get_a_hint():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(20, 30), torch.nn.ReLU(), torch.nn.Linear(30, 4))
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 20)).astype(np.float32)
    labels = rng.integers(0, 4, 50)
    with pytest.raises(ValueError, match=r"loss='mse' .*integer labels .*values 0\.\.3.*use loss='cross_entropy'"):
        ss.BlockSparsification(model, 1, 0.5, data=(X, labels), loss="mse", min_blocks=1)


@pytest.mark.reliability("right_result")
def test_integer_targets_with_mse_on_a_single_output_model_are_regression():
    """Integer-valued targets for a one-output model are a legitimate regression (no error)."""
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    rng = np.random.default_rng(1)
    X = rng.standard_normal((30, 6)).astype(np.float32)
    targets = rng.integers(0, 5, 30)
    problem = ss.BlockSparsification(model, 1, 0.5, data=(X, targets), loss="mse", min_blocks=1)
    with torch.no_grad():
        out = model(torch.as_tensor(X))
    expected = float(torch.mean((out[:, 0] - torch.as_tensor(targets, dtype=torch.float32)) ** 2))
    assert float(problem.loss_fn(out, problem.data[1])) == pytest.approx(expected, rel=1e-6)


@pytest.mark.reliability("right_result")
@pytest.mark.parametrize("solver", ["omp", "greedy_forward", "brute_force", "lasso"])
def test_select_seed_is_accepted_and_the_answer_is_the_reference(solver):
    """--seed reaches only the solvers that take one; the deterministic ones answer as without it."""
    from sklearn.datasets import load_diabetes

    X, y = load_diabetes(return_X_y=True)
    run = run_cli(["select", "--data", "builtin:diabetes", "--k", "3", "--solver", solver, "--seed", "0", "--json"])
    assert run.status == 0, run.err
    selected = set(json.loads(run.out)["selected"])
    if solver == "omp":
        assert selected == _sklearn_omp(X, y, 3)
    elif solver == "lasso":
        assert selected == _lars_support(X, y, 3)
    elif solver == "greedy_forward":
        assert selected == set(_greedy(X, y, 3))
    else:
        assert selected == set(_brute_force(X, y, 3))


@pytest.mark.reliability("clear_error")
def test_select_refuses_a_negative_seed():
    expect_clear_error(["select", "--data", "builtin:diabetes", "--k", "3", "--seed", "-1"], "--seed must be >= 0")
