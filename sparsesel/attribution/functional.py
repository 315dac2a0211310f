"""``attribute``: Captum-style attribution of a batch in one call, returning maps of the input's shape.

Captum users write ``IntegratedGradients(model).attribute(inputs, baselines, target=...)``;
here the method is an argument::

    from sparsesel.attribution import attribute
    maps = attribute(model, images, baselines=0.0, target=labels, method="integrated_gradients", n_steps=64)
    maps.shape == images.shape       # (B, C, H, W)

The call builds a batched :class:`~sparsesel.problems.attribution.Attribution` problem and
runs the solver of that name on all examples at once; use the problem and
:func:`sparsesel.solve` directly for the full :class:`~sparsesel.result.Result`
(selections, ``G`` values, convergence deltas, Greedy PIG's rounds).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

#: Solvers of the Attribution problem that produce a per-feature map, in the order they are documented.
ATTRIBUTE_METHODS: tuple[str, ...] = (
    "integrated_gradients", "greedy_pig", "gradient", "gradient_x_input", "random", "brute_force",
)
#: What the returned map holds: the solver's scores, or its ranking as scores ``n, n−1, …, 1``.
SCORES: tuple[str, ...] = ("attribution", "rank_scores")
#: Captum's option names accepted as synonyms of ours.
CAPTUM_SYNONYMS = {"n_steps": "steps", "internal_batch_size": "batch_size"}


def attribute(
    model: Any,
    inputs: Any,
    baselines: Any = None,
    target: Any = None,
    method: str = "integrated_gradients",
    *,
    output: str = "raw",
    groups: Any = None,
    k: int | None = None,
    scores: str = "attribution",
    **options: Any,
) -> torch.Tensor:
    """Attributions of a batch of inputs, shaped like the inputs (as Captum's ``attribute`` returns them).

    Parameters
    ----------
    model : callable
        Differentiable torch model mapping ``(N, *example_shape)`` to ``(N, n_outputs)`` or ``(N,)``
        (in ``eval()`` mode).
    inputs : Tensor or array_like, shape (B, *example_shape)
        A batch, always with its batch axis (as in Captum); ``B >= 1``.
    baselines : None, float, str, Tensor or array_like
        ``None`` (zeros, Captum's default), a number, a baseline name
        (``"zeros"``, ``"black"``, ``"blurred"``, ``"mean"``; per example), or an array of the
        inputs' shape, of shape ``(1, *example_shape)`` or of one example's shape (shared).
    target : None, int or sequence of int
        The output column to explain: one for all examples or one per example (a list,
        array or tensor of ``B`` ints); ``None`` for models with one output per input.
    method : str
        The solver: one of :data:`ATTRIBUTE_METHODS`.
    output : {"raw", "softmax", "log_softmax"}
        Transform of the model's outputs before the target is taken (``"raw"``, as Captum).
    groups : None, "pixels" or array_like of int
        Features (see :class:`~sparsesel.problems.attribution.Attribution`); every element of a
        feature carries that feature's attribution in the returned map (like Captum's ``feature_mask``).
        ``method="greedy_pig"`` with ``path="imputed"`` needs whole pixels (``"pixels"``).
    k : int, optional
        Features each example selects (default: all of them). Only Greedy PIG's maps
        and ``brute_force`` depend on it: its rounds fix ``k`` features greedily (or ``ranked``).
    scores : {"attribution", "rank_scores"}
        ``"attribution"``: the solver's per-feature scores (IG: the path integral;
        Greedy PIG: each feature's IG score in the round that fixed it). ``"rank_scores"``:
        the solver's ranking as ``n − position`` (for rank-based metrics such as SIC; with
        Greedy PIG, features fixed in earlier rounds rank first).
    **options
        Options of the solver (e.g. ``steps``, ``batch_size``, ``rounds``, ``path``); Captum's
        ``n_steps`` and ``internal_batch_size`` are accepted for ``steps`` and ``batch_size``, and
        ``quadrature`` names the quadrature rule (the solvers' ``method`` option: Captum's names).

    Returns
    -------
    Tensor, shape (B, *example_shape)
        Attributions, with the dtype and device of the (float) inputs.

    Raises
    ------
    ValueError, TypeError
        Bad inputs, baselines or targets (as :class:`~sparsesel.problems.attribution.Attribution`
        reports them), an unknown method or option, or an option given under two names.
    """
    import sparsesel
    from sparsesel.problems.attribution import Attribution, feature_labels
    from sparsesel.validation import check_choice

    check_choice(method, "method", ATTRIBUTE_METHODS)
    check_choice(scores, "scores", SCORES)
    options = _solver_options(options)
    if k is None:
        shape = tuple(np.shape(inputs))
        if len(shape) < 2:
            raise ValueError(f"inputs must be a batch (B, *example_shape) with at least 2 axes, got shape {shape}")
        k = feature_labels(groups, torch.empty(shape[1:]))[1]
    problem = Attribution(model, inputs, baseline=_baseline_argument(baselines, inputs), target=target, k=k,
                          groups=groups, output=output, batched=True)
    result = sparsesel.solve(problem, method, **options)
    features = torch.as_tensor(np.asarray(result.info[scores]).reshape(problem.n_examples, problem.n_features))
    elements = features[:, problem.labels.reshape(-1)].reshape(problem.x.shape)
    return elements.to(dtype=problem.x.dtype, device=problem.x.device)


def _solver_options(options: dict[str, Any]) -> dict[str, Any]:
    """Rename Captum's option names and ``quadrature`` to the solvers' names; refuse an option given twice."""
    renamed = dict(options)
    for theirs, ours in {**CAPTUM_SYNONYMS, "quadrature": "method"}.items():
        if theirs in renamed:
            if ours in renamed:
                raise ValueError(f"give either {theirs}= or {ours}=, not both")
            renamed[ours] = renamed.pop(theirs)
    return renamed


def _baseline_argument(baselines: Any, inputs: Any) -> Any:
    """Captum's baselines forms turned into the problem's: ``None`` → zeros, ``(1, ...)`` broadcast to the batch."""
    if baselines is None:
        return "zeros"
    if isinstance(baselines, (torch.Tensor, np.ndarray)):
        shape = tuple(np.shape(inputs))
        if baselines.ndim == len(shape) and baselines.shape[0] == 1 and tuple(baselines.shape[1:]) == shape[1:]:
            return baselines[0]
    return baselines
