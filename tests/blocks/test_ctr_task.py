"""The benchmark's synthetic click-through task (benchmarks/ctr_task.py) against independent references.

* the teacher's logit vs a row-by-row loop over fields, field pairs and the
  MLP's hidden units (and vs the stored click probabilities);
* irrelevant fields: permuting their values leaves the (reference) logit
  unchanged, permuting a relevant field's does not;
* determinism by seed, shapes, category ranges, the positive rate;
* the student's shapes and the first dense layer's block tiling;
* the benchmark's log loss vs the formula, and its output stem for a task subset.
"""

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

import sparsesel as ss

torch.set_num_threads(1)

_ROOT = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name, file):
    spec = importlib.util.spec_from_file_location(name, _ROOT / file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ctr = _load("bench_ctr_task_test", "ctr_task.py")
bench = _load("bench_block_sparsification_ctr_test", "block_sparsification.py")

N_TRAIN, N_TEST = 3000, 1000


@pytest.fixture(scope="module")
def data():
    return ctr.ctr_data(seed=5, n_train=N_TRAIN, n_test=N_TEST, return_teacher=True)


def reference_logit(teacher, row):
    """The teacher's logit of one input row, by explicit loops (the generator's definition)."""
    n_cat = len(teacher["vocab_sizes"])
    cats = [int(v) for v in row[:n_cat]]
    numeric = [float(v) for v in row[n_cat:]]
    fields = [int(f) for f in teacher["relevant_fields"]]
    a = teacher["field_weights"]
    first = sum(a[f] * teacher["first_order"][f][cats[f]] for f in fields)
    latent_dim = teacher["latent"][fields[0]].shape[1]
    pairwise = 0.0
    for i, f in enumerate(fields):
        for g in fields[i + 1:]:
            dot = sum(teacher["latent"][f][cats[f], k] * teacher["latent"][g][cats[g], k] for k in range(latent_dim))
            pairwise += a[f] * a[g] * dot
    pairwise /= np.sqrt(latent_dim)
    relevant_numeric = [numeric[j] for j in teacher["relevant_numeric"]]
    linear = sum(c * z for c, z in zip(teacher["numeric_weights"], relevant_numeric))
    inputs = relevant_numeric + [a[f] * teacher["latent"][f][cats[f], k] for f in fields for k in range(latent_dim)]
    mlp = 0.0
    for h in range(len(teacher["mlp_b1"])):
        pre = sum(w * x for w, x in zip(teacher["mlp_w1"][h], inputs)) + teacher["mlp_b1"][h]
        mlp += teacher["mlp_w2"][h] * np.tanh(pre)
    s = teacher["scales"]
    return (teacher["bias"] + s["first_order"] * first + s["pairwise"] * pairwise + s["numeric"] * linear
            + s["mlp"] * mlp)


def test_teacher_logit_matches_loop_and_probability(data):
    X, y, n_train, teacher = data
    rows = np.random.default_rng(0).choice(len(X), size=60, replace=False)
    expected = np.array([reference_logit(teacher, X[i]) for i in rows])
    np.testing.assert_allclose(ctr.teacher_logit(teacher, X[rows]), expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(teacher["probability"][rows], 1.0 / (1.0 + np.exp(-expected)), rtol=1e-9)


def test_only_relevant_fields_matter(data):
    X, y, n_train, teacher = data
    n_cat = len(teacher["vocab_sizes"])
    rows = np.arange(40)
    base = np.array([reference_logit(teacher, X[i]) for i in rows])
    rng = np.random.default_rng(1)
    irrelevant_cat = [f for f in range(n_cat) if f not in set(teacher["relevant_fields"])]
    irrelevant_num = [j for j in range(X.shape[1] - n_cat) if j not in set(teacher["relevant_numeric"])]
    assert irrelevant_cat and irrelevant_num
    shuffled = X.copy()
    for f in irrelevant_cat:
        shuffled[:, f] = rng.permutation(shuffled[:, f])
    for j in irrelevant_num:
        shuffled[:, n_cat + j] = rng.permutation(shuffled[:, n_cat + j])
    assert not np.array_equal(shuffled[rows], X[rows])
    np.testing.assert_allclose([reference_logit(teacher, shuffled[i]) for i in rows], base, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ctr.teacher_logit(teacher, shuffled[rows]), base, rtol=1e-9, atol=1e-9)
    relevant = X.copy()
    f = int(teacher["relevant_fields"][np.argmax(teacher["field_weights"][teacher["relevant_fields"]])])
    relevant[:, f] = rng.permutation(relevant[:, f])
    changed = np.array([reference_logit(teacher, relevant[i]) for i in rows])
    moved = relevant[rows, f] != X[rows, f]
    assert moved.any() and np.all(np.abs(changed - base)[moved] > 1e-9)


def test_deterministic_by_seed_and_shapes(data):
    X, y, n_train, teacher = data
    X2, y2, n2 = ctr.ctr_data(seed=5, n_train=N_TRAIN, n_test=N_TEST)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    X3, y3, _ = ctr.ctr_data(seed=6, n_train=N_TRAIN, n_test=N_TEST)
    assert not np.array_equal(X, X3) and not np.array_equal(y, y3)
    assert n_train == n2 == N_TRAIN
    assert X.shape == (N_TRAIN + N_TEST, ctr.N_CATEGORICAL + ctr.N_NUMERIC) and X.dtype == np.float32
    assert y.shape == (N_TRAIN + N_TEST,) and set(np.unique(y)) <= {0.0, 1.0}
    cats = X[:, : ctr.N_CATEGORICAL]
    assert np.array_equal(cats, np.round(cats)) and cats.min() >= 0
    assert np.all(cats.max(axis=0) < teacher["vocab_sizes"])
    numeric = X[:, ctr.N_CATEGORICAL:]
    np.testing.assert_allclose(numeric.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(numeric.std(axis=0), 1.0, atol=1e-3)
    assert len(teacher["relevant_fields"]) == 10 and len(teacher["relevant_numeric"]) == 6


def test_positive_rate(data):
    X, y, n_train, teacher = data
    assert abs(teacher["probability"].mean() - 0.25) < 1e-6  # the bias is set on the generated inputs
    assert 0.22 <= y.mean() <= 0.28  # Bernoulli labels: 4000 rows, sd of the rate ~0.007
    # each term, scaled, has standard deviation logit_std·sqrt(share) on the generated inputs (defaults 1.6, shares)
    parts = ctr.teacher_components(teacher, X)
    for name, share in zip(["first_order", "pairwise", "numeric", "mlp"], (0.4, 0.15, 0.1, 0.35)):
        assert np.std(teacher["scales"][name] * parts[name]) == pytest.approx(1.6 * np.sqrt(share), rel=1e-9)


def test_student_shapes_and_blocks(data):
    X, y, n_train, teacher = data
    torch.manual_seed(0)
    model = ctr.CTRNet(teacher["vocab_sizes"], ctr.N_NUMERIC)
    out = model(torch.as_tensor(X[:7]))
    assert out.shape == (7,)
    weight = dict(model.named_parameters())["dense.0.weight"]
    assert weight.shape == (128, ctr.N_CATEGORICAL * ctr.EMBEDDING_DIM + ctr.N_NUMERIC) == (128, 144)
    for block in (1, 4, 8, 16):
        problem = ss.BlockSparsification(model, (block, block), 0.1, data=(X[:n_train], y[:n_train]),
                                         loss=ctr.binary_cross_entropy, params=["dense.0.weight"])
        assert problem.grid("dense.0.weight") == (128 // block, 144 // block)
    # the loss is the mean binary cross-entropy of logits
    logits = torch.tensor([0.3, -1.2, 2.0])
    target = torch.tensor([1.0, 0.0, 0.0])
    p = 1.0 / (1.0 + np.exp(-logits.numpy()))
    expected = -np.mean(target.numpy() * np.log(p) + (1 - target.numpy()) * np.log(1 - p))
    assert float(ctr.binary_cross_entropy(logits, target)) == pytest.approx(expected, rel=1e-6)


def test_benchmark_log_loss_and_output_stem():
    class Constant(torch.nn.Module):
        def forward(self, x):
            return x[:, 0]

    y = np.array([1.0, 0.0, 1.0, 0.0, 0.0])
    X = np.array([[0.5], [-1.0], [2.0], [0.1], [-0.3]], dtype=np.float32)
    task = {"metric": "auc", "test": (X, y)}
    p = 1.0 / (1.0 + np.exp(-X[:, 0].astype(float)))
    expected = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert bench.extra_metrics(task, Constant())["log_loss"] == pytest.approx(expected, rel=1e-9)
    assert bench.extra_metrics({"metric": "accuracy", "test": (X, y)}, Constant()) == {}
    # pairs ranked: positives 0.5, 2.0 vs negatives -1.0, 0.1, -0.3: all six pairs ordered -> AUC 1
    assert bench.score(task, Constant()) == pytest.approx(100.0)
    args = argparse.Namespace(quick=False, shared_lr=False, tasks=None)
    assert bench.output_stem(args) == "block_sparsification"
    args.tasks = "ctr-embedding"
    assert bench.output_stem(args) == "block_sparsification_ctr-embedding"
    args.tasks = ",".join(reversed(bench.DEFAULT_TASKS))
    assert bench.output_stem(args) == "block_sparsification"
    args.tasks = "all"
    assert bench.output_stem(args) == "block_sparsification_digits-mlp_digits-cnn_wide-linear_ctr-embedding"
    with pytest.raises(argparse.ArgumentTypeError):
        bench.parse_tasks("criteo")
