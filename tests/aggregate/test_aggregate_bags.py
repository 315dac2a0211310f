"""Bags: construction, aggregation, and clear errors for bad bag assignments and aggregates."""

from __future__ import annotations

import numpy as np
import pytest

from sparsesel.aggregate import (
    BagLevelRegressor,
    InterpolatingClassifier,
    InterpolatingRegressor,
    aggregate_responses,
    as_bags,
    curated_bags,
    label_proportions,
    random_bags,
)


@pytest.mark.parametrize("n, size", [(100, 10), (103, 10), (7, 7), (9, 2)])
def test_random_bags_partition_rows_into_similar_sizes(n, size):
    ids = random_bags(n, size, seed=1)
    sizes = np.bincount(ids)
    assert ids.shape == (n,) and sizes.size == n // size
    assert sizes.sum() == n and set(sizes.tolist()) <= {size, size + 1}
    np.testing.assert_array_equal(ids, random_bags(n, size, seed=1))  # seeded
    assert not np.array_equal(ids, random_bags(n, size, seed=2)) or n == size


def test_curated_bags_group_equal_feature_values():
    X = np.array([[0, 1.0, 5], [1, 1.0, 6], [0, 1.0, 7], [1, 2.0, 5], [0, 1.0, 5]])
    ids = curated_bags(X, by=[0, 1])
    assert ids.tolist() == [0, 1, 0, 2, 0]
    assert curated_bags(X).tolist() == [0, 1, 2, 3, 0]
    clusters = curated_bags(np.r_[np.zeros((5, 2)), np.ones((5, 2)) * 10], by="kmeans", n_clusters=2)
    assert sorted(np.bincount(clusters).tolist()) == [5, 5] and len(set(clusters[:5])) == 1


def test_aggregation_mean_sum_and_proportions():
    y = np.array([1.0, 2.0, 3.0, 10.0])
    bags = [[0, 3], [1, 2]]  # index-list form
    np.testing.assert_allclose(aggregate_responses(y, bags), [5.5, 2.5])
    np.testing.assert_allclose(aggregate_responses(y, [0, 1, 1, 0], "sum"), [11.0, 5.0])
    labels = np.array([0, 1, 1, 2, 2, 2])
    np.testing.assert_allclose(label_proportions(labels, [0, 0, 0, 1, 1, 1]), [[1 / 3, 2 / 3, 0], [0, 0, 1]])


@pytest.mark.parametrize(
    "bags, message",
    [
        (np.zeros(9, dtype=int), "has 9 entries but X has 10 rows: the bags must partition the rows"),
        (np.array([0, 0, 2, 2, 2, 3, 3, 3, 3, 3]), r"1 empty bag\(s\) \(ids \[1\] have no rows\)"),
        ([[0, 1, 2], [3, 4], []], r"bags\[2\] is empty"),
        ([[0, 1, 2, 3, 4], [4, 5, 6, 7, 8, 9]], "do not partition the rows: row 4 is in bag 0 and in bag 1"),
        ([[0, 1, 2], [3, 4, 5]], r"4 row\(s\) are in no bag"),
        ([[0, 1, 2, 3, 4], [5, 6, 7, 8, 12]], r"bags\[1\] \(row indices\) has out-of-range indices \[12\]"),
        ([[0, 1, 2, 3, 4], [5, 6, 7, 8, 8, 9]], r"bags\[1\] \(row indices\) has repeated indices \[8\]"),
        (np.array([0.5] * 10), "integer ids"),
        (-np.ones(10, dtype=int), "ids must be >= 0"),
    ],
)
def test_bags_that_do_not_partition_the_rows_are_rejected(bags, message):
    X = np.random.default_rng(0).normal(size=(10, 2))
    with pytest.raises((ValueError, TypeError), match=message):
        as_bags(bags, 10)
    with pytest.raises((ValueError, TypeError), match=message):
        BagLevelRegressor().fit(X, np.zeros(5), bags)


@pytest.mark.parametrize("estimator", [InterpolatingRegressor(rho=0.5), InterpolatingClassifier(rho=0.5)])
def test_aggregates_of_the_wrong_length_are_rejected(estimator):
    X = np.random.default_rng(0).normal(size=(10, 2))
    with pytest.raises(ValueError, match="y_agg has 4 aggregate"):
        estimator.fit(X, np.full(4, 0.5), np.arange(10) // 2)


def test_other_bad_inputs_name_the_problem():
    X = np.random.default_rng(0).normal(size=(10, 2))
    bags = np.arange(10) // 2
    with pytest.raises(ValueError, match="rho must be in"):
        InterpolatingRegressor(rho=1.5).fit(X, np.zeros(5), bags)
    with pytest.raises(ValueError, match="NaN or infinite"):
        InterpolatingRegressor().fit(X, np.array([0, 1, np.nan, 0, 0]), bags)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        InterpolatingClassifier().fit(X, np.array([0, 1, 1.5, 0, 0]), bags)
    with pytest.raises(ValueError, match="use rho='cv' for classifiers"):
        InterpolatingClassifier(rho="auto").fit(X, np.full(5, 0.5), bags)
    with pytest.raises(ValueError, match="model must be one of"):
        InterpolatingRegressor(model="tree").fit(X, np.zeros(5), bags)
    with pytest.raises(ValueError, match="X has 3 features but the model was fit with 2"):
        InterpolatingRegressor().fit(X, np.zeros(5), bags).predict(np.zeros((2, 3)))
