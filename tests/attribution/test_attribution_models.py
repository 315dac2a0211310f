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


def test_graph_edge_instance_is_the_graph_with_weighted_edges():
    """All-ones edge weights reproduce the node-feature model; a zero weight equals deleting the edge
    from the adjacency (networkx); IG over the edges equals Captum's IG on the same function."""
    captum_attr = pytest.importorskip("captum.attr")
    torch.manual_seed(0)
    data = models.motif_graphs(2, base_nodes=10, seed=1)
    gnn = models.DenseGCN().eval()
    adjacency = torch.from_numpy(data["adjacency"][0])
    features = torch.from_numpy(data["features"][0])
    edges_instance = models.GraphEdgeInstance(gnn, adjacency, features).eval()
    graph = nx.from_numpy_array(data["adjacency"][0])
    assert sorted(map(tuple, edges_instance.edges.tolist())) == sorted(tuple(sorted(e)) for e in graph.edges)
    n_edges = graph.number_of_edges()
    node_instance = models.GraphInstance(gnn, adjacency).eval()
    with torch.no_grad():
        torch.testing.assert_close(edges_instance(torch.ones(1, n_edges)), node_instance(features[None]))
        removed = 3
        u, v = edges_instance.edges[removed].tolist()
        graph.remove_edge(u, v)
        smaller = torch.from_numpy(nx.to_numpy_array(graph, nodelist=range(len(adjacency)), dtype=np.float32))
        weights = torch.ones(1, n_edges)
        weights[0, removed] = 0.0
        torch.testing.assert_close(edges_instance(weights), models.GraphInstance(gnn, smaller)(features[None]))
    problem = ss.Attribution(edges_instance, torch.ones(n_edges), baseline="zeros", target=1, k=3, output="raw")
    ours = torch.as_tensor(ss.solve(problem, "integrated_gradients", steps=32, method="gausslegendre").info["attribution"])
    theirs = captum_attr.IntegratedGradients(edges_instance).attribute(
        torch.ones(1, n_edges), baselines=torch.zeros(1, n_edges), target=1, n_steps=32, method="gausslegendre")[0]
    torch.testing.assert_close(ours.to(theirs.dtype), theirs, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="symmetric"):
        models.GraphEdgeInstance(gnn, torch.triu(adjacency), features)
