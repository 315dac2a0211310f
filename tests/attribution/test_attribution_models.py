"""The helper models: table objective vs scikit-learn, planted motifs vs networkx, global feature selection."""

import networkx as nx
import numpy as np
import pytest
import torch
from sklearn.metrics import log_loss, mean_squared_error

import sparsesel as ss
from sparsesel.attribution import models


def test_table_objective_matches_sklearn_losses():
    generator = torch.Generator().manual_seed(0)
    net = models.TabularMLP(4, 3)
    X = torch.randn(30, 4, generator=generator)
    y = torch.arange(30) % 3
    objective = models.TableObjective(net, y, "classification")
    with torch.no_grad():
        proba = torch.softmax(net(X).double(), 1).numpy()
        value = objective(torch.stack([X, 2 * X]))
    assert value.shape == (2,)
    assert float(value[0]) == pytest.approx(-log_loss(y.numpy(), proba, labels=[0, 1, 2]), rel=1e-5)
    regression = models.TableObjective(models.TabularMLP(4, 1), torch.randn(30, generator=generator), "regression")
    with torch.no_grad():
        pred = regression.model(X)[:, 0].numpy()
        assert float(regression(X[None])[0]) == pytest.approx(-mean_squared_error(regression.y.numpy(), pred), rel=1e-5)


def test_planted_motifs_have_known_structure():
    data = models.motif_graphs(6, base_nodes=12, seed=3)
    for adjacency, label, motif in zip(data["adjacency"], data["labels"], data["motif_nodes"]):
        graph = nx.from_numpy_array(adjacency)
        assert nx.is_connected(graph)
        sub = graph.subgraph(motif.tolist())
        if label == 1:
            assert sub.number_of_edges() == 6 and sorted(d for _, d in sub.degree()) == [2, 2, 2, 3, 3]
        else:
            assert sub.number_of_edges() == 5 and nx.cycle_basis(sub) and all(d == 2 for _, d in sub.degree())
    a = torch.from_numpy(data["adjacency"][0])
    norm = models.normalized_adjacency(a).numpy()
    degree = a.numpy().sum(1) + 1
    expected = (a.numpy() + np.eye(len(a))) / np.sqrt(np.outer(degree, degree))
    np.testing.assert_allclose(norm, expected, rtol=1e-6)


def test_global_feature_selection_on_a_table_finds_the_informative_column():
    """A logistic model that only uses column 2: every gradient method must rank it first."""
    generator = torch.Generator().manual_seed(1)
    X = torch.randn(50, 5, generator=generator)
    y = (X[:, 2] > 0).long()
    net = torch.nn.Linear(5, 2)
    with torch.no_grad():
        net.weight.zero_()
        net.weight[1, 2], net.weight[0, 2] = 3.0, -3.0
        net.bias.zero_()
    problem = ss.Attribution(models.TableObjective(net, y, "classification"), X, k=1, groups=np.arange(5))
    assert problem.n_features == 5
    best = ss.solve(problem, "brute_force")
    for solver in ("integrated_gradients", "greedy_pig", "gradient_x_input"):
        assert ss.solve(problem, solver).selected == best.selected == (2,)
