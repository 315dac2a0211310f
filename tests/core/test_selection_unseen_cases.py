"""Unseen-case audit of feature selection: oracles are scikit-learn, brute force and error texts."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, OrthogonalMatchingPursuit
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

import sparsesel as ss
from sparsesel.cli import main
from sparsesel.selectors import OMPSelector


def _refit_mse(X: np.ndarray, y: np.ndarray, subset: list[int]) -> float:
    model = LinearRegression().fit(X[:, subset], y)
    return float(np.mean((y - model.predict(X[:, subset])) ** 2))


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_omp_matches_sklearn_on_correlated_shifted_design(fit_intercept):
    rng = np.random.default_rng(11)
    common = rng.normal(size=(80, 1))
    X = 0.9 * common + 0.3 * rng.normal(size=(80, 30)) + 5.0  # strongly correlated, far from 0
    y = X[:, :3] @ np.ones(3) + 0.1 * rng.normal(size=80)
    result = ss.solve(ss.FeatureSelection(X, y, 6, fit_intercept=fit_intercept), solver="omp")
    reference = OrthogonalMatchingPursuit(n_nonzero_coefs=6, fit_intercept=fit_intercept).fit(X, y)
    assert set(result.selected) == set(np.flatnonzero(reference.coef_))
    coef = np.zeros(30)
    coef[list(result.selected)] = result.info["coef"]
    np.testing.assert_allclose(coef, reference.coef_, rtol=1e-8, atol=1e-10)
    assert result.info["intercept"] == pytest.approx(float(reference.intercept_), rel=1e-8, abs=1e-10)


def test_solvers_with_constant_and_duplicated_columns_keep_the_brute_force_objective():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(50, 5))
    X = np.column_stack([X, np.full(50, 7.0), X[:, 0]])  # a constant column and a duplicate of column 0
    y = X[:, 0] - 2 * X[:, 1] + 0.5 * rng.normal(size=50)
    best = min(_refit_mse(X, y, list(s)) for s in itertools.combinations(range(7), 2))
    for solver in ("omp", "greedy_forward", "brute_force"):
        result = ss.solve(ss.FeatureSelection(X, y, 2), solver=solver)
        assert len(set(result.selected)) == 2
        assert result.objective == pytest.approx(_refit_mse(X, y, list(result.selected)), rel=1e-9, abs=1e-12)
        assert result.objective == pytest.approx(best, rel=1e-9)


def test_pandas_and_float32_inputs_select_like_float64_numpy():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 6))
    y = X[:, 2] * 3 + X[:, 4] + 0.1 * rng.normal(size=60)
    frame = pd.DataFrame(X, columns=list("abcdef"))
    plain = ss.solve(ss.FeatureSelection(X, y, 2), solver="omp").selected
    assert ss.solve(ss.FeatureSelection(frame, pd.Series(y), 2), solver="omp").selected == plain
    assert ss.solve(ss.FeatureSelection(X.astype(np.float32), y.astype(np.float32), 2), solver="omp").selected == plain


def test_k_larger_than_d_names_the_number_of_features():
    with pytest.raises(ValueError, match=r"k must be <= 3, got 4: X has only 3 feature\(s\)"):
        ss.FeatureSelection(np.eye(5, 3), np.arange(5.0), 4)


def test_selector_in_gridsearch_with_dataframe_names():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(60, 8))
    y = X[:, :3] @ np.ones(3) + 0.1 * rng.normal(size=60)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(8)])
    search = GridSearchCV(Pipeline([("sel", OMPSelector()), ("lr", LinearRegression())]), {"sel__k": [1, 2, 3, 5]}, cv=3)
    search.fit(frame, y)
    selector = search.best_estimator_.named_steps["sel"]
    reference = OrthogonalMatchingPursuit(n_nonzero_coefs=selector.n_features_to_select_).fit(X, y)
    assert sorted(selector.get_feature_names_out()) == [f"f{i}" for i in np.flatnonzero(reference.coef_)]
    kept = selector.transform(frame)
    assert kept.shape == (60, selector.n_features_to_select_)
    restored = selector.inverse_transform(kept)
    assert restored.shape == (60, 8)
    np.testing.assert_array_equal(restored[:, ~selector.get_support()], 0.0)


# ------------------------------------------------------------------ select CLI: unreadable inputs
def _data(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3))
    return X, X @ [1.0, 2.0, 0.0]


def test_cli_corrupt_binary_csv_names_the_file(tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_bytes(bytes(range(256)) * 3)
    assert main(["select", "--data", str(path), "--target", "t", "--k", "1"]) == 2
    assert "bad.csv is not a UTF-8 text CSV file" in capsys.readouterr().err


def test_cli_csv_with_byte_order_mark_finds_the_first_column(tmp_path, capsys):
    X, y = _data(tmp_path)
    path = tmp_path / "bom.csv"
    rows = "\n".join(",".join(repr(float(v)) for v in (t, *x)) for t, x in zip(y, X))
    path.write_text("t,a,b,c\n" + rows + "\n", encoding="utf-8-sig")
    assert main(["select", "--data", str(path), "--target", "t", "--k", "1"]) == 0
    best = int(np.argmax(np.abs((X - X.mean(0)).T @ (y - y.mean()))))
    assert f"[{best}] {'abc'[best]}" in capsys.readouterr().out


@pytest.mark.parametrize("content", [b"garbage" * 10, b""])
def test_cli_corrupt_npz_says_it_is_not_an_archive(tmp_path, capsys, content):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    assert main(["select", "--data", str(path), "--k", "1"]) == 2
    err = capsys.readouterr().err
    assert "bad.npz is not a NumPy .npz archive" in err
    assert "pickled" not in err


def test_cli_truncated_npz_is_a_clear_error(tmp_path, capsys):
    X, y = _data(tmp_path)
    good = tmp_path / "good.npz"
    np.savez(good, X=X, y=y)
    data = good.read_bytes()
    path = tmp_path / "cut.npz"
    path.write_bytes(data[: len(data) // 2])
    assert main(["select", "--data", str(path), "--k", "1"]) == 2
    assert "cut.npz" in capsys.readouterr().err


def test_cli_folder_instead_of_file(tmp_path, capsys):
    folder = tmp_path / "data.csv"
    folder.mkdir()
    assert main(["select", "--data", str(folder), "--target", "t", "--k", "1"]) == 2
    assert "is not a file" in capsys.readouterr().err
