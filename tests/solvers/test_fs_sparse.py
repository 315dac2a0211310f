"""Feature selection on a scipy sparse X: never densified, same answer as on the dense array.

Oracles: the same solver on ``X.toarray()``, scikit-learn's ``OrthogonalMatchingPursuit`` (dense) and
``Lasso`` (which takes sparse X itself), and ``tracemalloc``'s peak for "not densified".
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.linear_model import Lasso, OrthogonalMatchingPursuit

import sparsesel as ss
from sparsesel.selectors import OMPSelector

SPARSE_SOLVERS = ("omp", "greedy_forward", "lasso")


def _sparse_regression(seed: int, n: int = 300, d: int = 50, density: float = 0.1, offset: float = 0.0):
    rng = np.random.default_rng(seed)
    X = sp.random_array((n, d), density=density, rng=rng, format="csr", data_sampler=lambda size: rng.uniform(0.5, 3, size))
    if offset:  # a large common value in the stored entries: centring must not lose digits
        X.data += offset
    beta = np.zeros(d)
    beta[rng.choice(d, 5, replace=False)] = rng.choice([-1.0, 1.0], 5) * rng.uniform(1.0, 3.0, 5)
    y = X @ beta + 0.2 * rng.standard_normal(n) + 1.5
    return X, y


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("solver", SPARSE_SOLVERS)
def test_sparse_equals_dense(solver, fit_intercept, fmt):
    for seed in range(3):
        X, y = _sparse_regression(seed)
        X = X.asformat(fmt)
        sparse = ss.solve(ss.FeatureSelection(X, y, 6, fit_intercept=fit_intercept), solver)
        dense = ss.solve(ss.FeatureSelection(X.toarray(), y, 6, fit_intercept=fit_intercept), solver)
        assert sparse.selected == dense.selected
        assert sparse.objective == pytest.approx(dense.objective, rel=1e-9, abs=1e-12)
        np.testing.assert_allclose(sparse.info["coef"], dense.info["coef"], rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("matrix", [sp.csr_matrix, sp.csc_array])
def test_sparse_omp_equals_sklearn_omp(matrix):
    X, y = _sparse_regression(4, n=200, d=80)
    result = ss.solve(ss.FeatureSelection(matrix(X), y, 7), "omp")
    reference = OrthogonalMatchingPursuit(n_nonzero_coefs=7).fit(X.toarray(), y)
    np.testing.assert_array_equal(np.sort(result.selected), np.flatnonzero(reference.coef_))
    np.testing.assert_allclose(result.info["coef"][np.argsort(result.selected)], reference.coef_[reference.coef_ != 0],
                               rtol=1e-9)
    assert result.info["intercept"] == pytest.approx(reference.intercept_, rel=1e-9)


def test_sparse_lasso_support_equals_sklearn_lasso_on_the_sparse_matrix():
    for seed in range(3):
        X, y = _sparse_regression(10 + seed)
        result = ss.solve(ss.FeatureSelection(X, y, 5), "lasso")
        assert result.info["exact_k"]
        reference = Lasso(alpha=result.info["alpha"], tol=1e-12, max_iter=100_000).fit(X, y)  # sparse X as well
        assert set(result.selected) == set(np.flatnonzero(reference.coef_).tolist())


def test_centring_is_exact_for_entries_with_a_large_offset():
    """‖xᶜ_j‖² summed over stored entries: no cancellation when the mean is large (greedy_forward's norms)."""
    X, y = _sparse_regression(5, density=0.5, offset=1e6)
    sparse = ss.solve(ss.FeatureSelection(X, y, 5), "greedy_forward")
    dense = ss.solve(ss.FeatureSelection(X.toarray(), y, 5), "greedy_forward")
    assert sparse.selected == dense.selected
    assert sparse.objective == pytest.approx(dense.objective, rel=1e-6)


@pytest.mark.parametrize("solver", ["greedy_forward", "lasso"])
def test_sparse_logistic_equals_dense(solver):
    X, y = _sparse_regression(6)
    labels = (y > np.median(y)).astype(float)
    sparse = ss.solve(ss.FeatureSelection(X, labels, 4, loss="logistic"), solver)
    dense = ss.solve(ss.FeatureSelection(X.toarray(), labels, 4, loss="logistic"), solver)
    assert sparse.selected == dense.selected
    assert sparse.objective == pytest.approx(dense.objective, rel=1e-9)


def _peak_bytes(problem, solver: str) -> int:
    tracemalloc.start()
    try:
        ss.solve(problem, solver)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("solver", SPARSE_SOLVERS)
def test_large_sparse_input_is_not_densified(solver):
    """40000 × 2000 at 0.1% (dense: 610 MiB). omp and greedy_forward keep only a few dense columns;
    lasso builds the d × d Gram matrix (31 MiB) but never the n × d array."""
    rng = np.random.default_rng(7)
    n, d = 40_000, 2_000
    X = sp.random_array((n, d), density=0.001, rng=rng, format="csr")
    y = X @ rng.standard_normal(d) + rng.standard_normal(n)
    problem = ss.FeatureSelection(X, y, 8)
    ss.solve(ss.FeatureSelection(np.eye(3), np.arange(3.0), 1), solver)  # imports outside the measurement
    dense_bytes = n * d * 8
    limit = dense_bytes / 8 if solver == "lasso" else dense_bytes / 30
    assert _peak_bytes(problem, solver) < limit


@pytest.mark.parametrize("solver", ["brute_force", "sequential_attention"])
def test_solvers_that_need_dense_say_so(solver):
    X, y = _sparse_regression(8, d=8)
    problem = ss.FeatureSelection(X, y, 2)
    with pytest.raises(ValueError, match=rf"solver '{solver}' does not accept this FeatureSelection: it needs a dense X, "
                                         r"got a scipy sparse matrix \(300×8, .*omp, greedy_forward, lasso.*X.toarray\(\)"):
        ss.solve(problem, solver)
    assert sorted(ss.solvers_for(problem)) == ["greedy_forward", "lasso", "omp"]  # only those that take sparse X


def test_sparse_problem_copies_checks_and_protects_its_data():
    X, y = _sparse_regression(9, d=10)
    before = X.copy()
    problem = ss.FeatureSelection(X, y, 3)
    assert problem.is_sparse and problem.X.format == "csc"
    X.data[:] = 0.0  # the caller's matrix is theirs: the problem kept a copy
    assert (problem.X != before).nnz == 0
    with pytest.raises(ValueError, match="read-only"):
        problem.X.data[0] = 1.0
    bad = before.copy()
    bad.data[3] = np.nan
    with pytest.raises(ValueError, match=r"X contains 1 NaN or infinite value\(s\)"):
        ss.FeatureSelection(bad, y, 3)
    with pytest.raises(TypeError, match="X must be real"):
        ss.FeatureSelection(before.astype(np.complex128), y, 3)
    with pytest.raises(ValueError, match=r"y has 299 entries but X has 300 rows"):
        ss.FeatureSelection(before, y[:-1], 3)


def test_omp_selector_takes_sparse_input():
    X, y = _sparse_regression(11)
    selector = OMPSelector(k=5).fit(X, y)
    assert selector.selected_features_.tolist() == list(ss.solve(ss.FeatureSelection(X.toarray(), y, 5), "omp").selected)
    assert sp.issparse(selector.transform(X)) and selector.transform(X).shape == (300, 5)


def test_greedy_forward_n_jobs_gives_the_same_result():
    X, y = _sparse_regression(12, d=15)
    labels = (y > np.median(y)).astype(float)
    problem = ss.FeatureSelection(X.toarray(), labels, 3, loss="logistic")
    serial = ss.solve(problem, "greedy_forward")
    parallel = ss.solve(problem, "greedy_forward", n_jobs=2)
    assert serial.selected == parallel.selected and serial.objective == parallel.objective
    assert [t["objective"] for t in serial.trace] == [t["objective"] for t in parallel.trace]
    with pytest.raises(ValueError, match="n_jobs must be a positive number of threads or negative"):
        ss.solve(problem, "greedy_forward", n_jobs=0)


def test_readme_sparse_example_runs_as_written():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    blocks = [block.split("```", 1)[0] for block in text.split("```python\n")[1:] if "X_sparse stays sparse" in block]
    assert len(blocks) == 1
    namespace = {"ss": ss}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    X_sparse, y_sparse = namespace["X_sparse"], namespace["y_sparse"]
    assert sp.issparse(X_sparse)
    sparse = ss.solve(ss.FeatureSelection(X_sparse, y_sparse, k=5), "omp")
    dense = OrthogonalMatchingPursuit(n_nonzero_coefs=5).fit(X_sparse.toarray(), y_sparse)
    assert set(sparse.selected) == set(np.flatnonzero(dense.coef_).tolist())
