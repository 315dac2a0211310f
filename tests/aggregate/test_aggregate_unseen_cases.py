"""Unseen-case audit of learning from aggregate responses.

Oracles: scikit-learn's LinearRegression / Ridge / LogisticRegression, explicit
``numpy.linalg.lstsq`` solutions of the stated objectives, direct per-bag loops.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge

import sparsesel as ss
from sparsesel.aggregate import (
    BagLevelClassifier,
    BagLevelRegressor,
    InstanceLevelClassifier,
    InstanceLevelRegressor,
    InterpolatingRegressor,
    aggregate_responses,
    curated_bags,
    label_proportions,
    private_aggregates,
    private_label_proportions,
)
from sparsesel.cli import main
from sparsesel.problems.bag_design import BagDesign

RNG = np.random.default_rng(0)
N, D = 60, 4
X = RNG.normal(size=(N, D))
Y = X @ np.arange(1.0, D + 1) + 2.0 + 0.5 * RNG.normal(size=N)
SIZES = [1, 2, 3, 5, 7, 10, 12, 20]
UNEQUAL = np.repeat(np.arange(len(SIZES)), SIZES)
RNG.shuffle(UNEQUAL)


@pytest.mark.parametrize("estimator", [BagLevelRegressor, InstanceLevelRegressor, lambda **kw: InterpolatingRegressor(0.3, **kw)])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_bags_of_size_one_equal_ordinary_least_squares(estimator, fit_intercept):
    model = estimator(fit_intercept=fit_intercept).fit(X, Y, np.arange(N))
    reference = LinearRegression(fit_intercept=fit_intercept).fit(X, Y)
    np.testing.assert_allclose(model.coef_, reference.coef_, rtol=1e-10, atol=1e-12)
    assert model.intercept_ == pytest.approx(float(reference.intercept_), abs=1e-10)


def test_bags_of_size_one_with_ridge_equal_sklearn_ridge():
    alpha = 0.1
    model = BagLevelRegressor(alpha=alpha).fit(X, Y, np.arange(N))
    reference = Ridge(alpha=alpha * N).fit(X, Y)  # (1/n)‖r‖² + alpha‖w‖²  ==  ‖r‖² + n·alpha‖w‖²
    np.testing.assert_allclose(model.coef_, reference.coef_, rtol=1e-10)


def _weighted_lstsq(rows_a: np.ndarray, targets_a: np.ndarray, rows_b: np.ndarray, targets_b: np.ndarray) -> np.ndarray:
    return np.linalg.lstsq(np.vstack([rows_a, rows_b]), np.concatenate([targets_a, targets_b]), rcond=None)[0]


@pytest.mark.parametrize("rho", [0.0, 0.4, 1.0])
def test_unequal_bags_match_explicit_lstsq_of_the_interpolated_objective(rho):
    y_bar = aggregate_responses(Y, UNEQUAL)
    sizes = np.bincount(UNEQUAL)
    X_bar = np.array([X[UNEQUAL == a].mean(axis=0) for a in range(len(SIZES))])  # naive per-bag loop
    ones_bags, ones_rows = np.ones((len(SIZES), 1)), np.ones((N, 1))
    weight = np.sqrt(sizes * (1 - rho))[:, None]
    solution = _weighted_lstsq(
        weight * np.hstack([X_bar, ones_bags]), weight[:, 0] * y_bar,
        np.sqrt(rho) * np.hstack([X, ones_rows]), np.sqrt(rho) * y_bar[UNEQUAL],
    )
    model = InterpolatingRegressor(rho=rho).fit(X, y_bar, UNEQUAL)
    np.testing.assert_allclose(model.coef_, solution[:D], rtol=1e-9, atol=1e-10)
    assert model.intercept_ == pytest.approx(solution[D], abs=1e-9)
    end = BagLevelRegressor() if rho == 0 else InstanceLevelRegressor() if rho == 1 else None
    if end is not None:
        np.testing.assert_allclose(end.fit(X, y_bar, UNEQUAL).coef_, solution[:D], rtol=1e-9, atol=1e-10)


def test_one_bag_holding_every_row_predicts_the_mean():
    model = BagLevelRegressor().fit(X, [Y.mean()], np.zeros(N, dtype=int))
    np.testing.assert_allclose(model.predict(X), Y.mean(), rtol=1e-12)
    with pytest.raises(ValueError, match="rho='cv' needs at least 2 bags"):
        InterpolatingRegressor(rho="cv").fit(X, [Y.mean()], np.zeros(N, dtype=int))


def test_private_aggregates_with_huge_epsilon_equal_the_exact_ones():
    release = private_aggregates(Y, UNEQUAL, epsilon=1e12, clip=1e6)
    exact = np.array([Y[UNEQUAL == a].mean() for a in range(len(SIZES))])
    np.testing.assert_allclose(release.values, exact, atol=1e-4)
    proportions = private_label_proportions((Y > Y.mean()).astype(int), UNEQUAL, epsilon=1e12)
    labels = (Y > Y.mean()).astype(int)
    direct = np.array([[np.mean(labels[UNEQUAL == a] == c) for c in (0, 1)] for a in range(len(SIZES))])
    np.testing.assert_allclose(proportions.values, direct, atol=1e-9)


def test_label_proportions_with_nan_labels_say_so():
    labels = (Y > 0).astype(float)
    labels[5] = np.nan
    with pytest.raises(ValueError, match=r"y \(class labels\) contains 1 NaN or infinite value\(s\), e.g. at row 5"):
        label_proportions(labels, UNEQUAL)


@pytest.mark.parametrize("estimator", [BagLevelClassifier, InstanceLevelClassifier])
def test_classifiers_on_singleton_bags_equal_logistic_regression_on_standardised_features(estimator):
    labels = (Y > np.median(Y) + 3 * RNG.normal(size=N)).astype(int)
    alpha = 1e-2
    model = estimator(alpha=alpha).fit(X, label_proportions(labels, np.arange(N)), np.arange(N))
    Z = (X - X.mean(axis=0)) / X.std(axis=0)
    reference = LogisticRegression(C=1.0 / (alpha * N), tol=1e-12, max_iter=10_000).fit(Z, labels)
    np.testing.assert_allclose(model.predict_proba(X)[:, 1], reference.predict_proba(Z)[:, 1], atol=1e-4)


def test_curated_bags_out_of_range_column_names_the_width():
    with pytest.raises(ValueError, match=r"by names column 5, but X has 2 column\(s\) \(valid indices 0..1\)"):
        curated_bags(np.ones((3, 2)), by=[5])
    with pytest.raises(ValueError, match=r"by names column -1"):
        curated_bags(np.ones((3, 2)), by=[-1])


@pytest.mark.parametrize(("n_reps", "error", "message"), [(True, TypeError, "n_reps must be an integer, got bool"),
                                                          (1, ValueError, "n_reps must be >= 2, got 1")])
def test_bag_design_simulation_checks_n_reps(n_reps, error, message):
    problem = BagDesign(n_samples=400, n_features=10, signal=1.0, noise=1.0, bag_sizes=(1, 2))
    with pytest.raises(error, match=message):
        ss.solve(problem, solver="simulation", n_reps=n_reps)


def test_aggregate_cli_refuses_json_equal_to_plot_before_any_work(tmp_path, capsys):
    data = tmp_path / "t.csv"
    rows = "\n".join(",".join(repr(float(v)) for v in (*x, t)) for x, t in zip(X, Y))
    data.write_text("a,b,c,d,t\n" + rows + "\n")
    out = tmp_path / "same.png"
    argv = ["aggregate", "--data", str(data), "--target", "t", "--bag-size", "5", "--out", str(out), "--json", str(out)]
    assert main(argv) == 2
    assert "--json and the plot (--out) name the same file" in capsys.readouterr().err
    assert not out.exists()


def test_aggregate_cli_missing_target_and_existing_output(tmp_path, capsys):
    data = tmp_path / "t.csv"
    data.write_text("a,t\n1,2\n3,4\n")
    assert main(["aggregate", "--data", str(data), "--target", "zz", "--bag-size", "1", "--out", str(tmp_path / "p.png")]) == 2
    assert "target column 'zz' not in t.csv; columns: a, t" in capsys.readouterr().err
    existing = tmp_path / "old.png"
    existing.write_bytes(b"keep")
    assert main(["aggregate", "--data", str(data), "--target", "t", "--bag-size", "1", "--out", str(existing)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert existing.read_bytes() == b"keep"


def _breast_cancer_csv(path):
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    header = ",".join([f"f{j}" for j in range(data.data.shape[1])] + ["label"])
    rows = "\n".join(",".join([*(repr(float(v)) for v in x), str(int(t))]) for x, t in zip(data.data, data.target))
    path.write_text(header + "\n" + rows + "\n")
    return data.data, data.target


def test_aggregate_cli_task_classification_from_a_csv(tmp_path, capsys):
    """``--task classification`` runs label proportions from a CSV of 0/1 labels.

    References: bags of one row are the instance labels, so the bag-level and instance-level
    classifiers coincide; and both match scikit-learn's LogisticRegression with ``C = 1/(alpha n)``
    on the same standardised split (within one test row, for points on the boundary).
    """
    import json

    from sklearn.model_selection import train_test_split

    data = tmp_path / "bc.csv"
    X, y = _breast_cancer_csv(data)
    report = tmp_path / "risks.json"
    argv = ["aggregate", "--data", str(data), "--target", "label", "--task", "classification", "--bag-size", "1",
            "--rho", "0.5", "--out", str(tmp_path / "p.png"), "--json", str(report)]
    assert main(argv) == 0
    payload = json.loads(report.read_text())
    assert payload["task"] == "classification"
    bag, instance = payload["results"]["bag"], payload["results"]["instance"]
    assert bag["accuracy"] == pytest.approx(instance["accuracy"]) and bag["cross_entropy"] == pytest.approx(instance["cross_entropy"], rel=1e-4)

    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    mean, std = X_tr.mean(axis=0), X_tr.std(axis=0)
    reference = LogisticRegression(C=1.0 / (1e-4 * len(X_tr)), max_iter=20000).fit((X_tr - mean) / std, y_tr)
    expected = reference.score((X_te - mean) / std, y_te)
    assert abs(instance["accuracy"] - expected) <= 1.0 / len(X_te) + 1e-12
    assert "accuracy" in capsys.readouterr().out


def test_aggregate_cli_task_classification_refuses_a_continuous_response(tmp_path, capsys):
    data = tmp_path / "t.csv"
    rows = "\n".join(",".join(repr(float(v)) for v in (*x, t)) for x, t in zip(X, Y))
    data.write_text("a,b,c,d,t\n" + rows + "\n")
    argv = ["aggregate", "--data", str(data), "--target", "t", "--task", "classification", "--bag-size", "5",
            "--out", str(tmp_path / "p.png")]
    assert main(argv) == 2
    assert "needs integer class labels, but column 't' holds non-integer values" in capsys.readouterr().err
    assert not (tmp_path / "p.png").exists()
