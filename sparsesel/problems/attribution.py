"""Attribution: choose the k input features that explain a model's output.

The set function is ``G(S) = f(b + m_S ⊙ (x − b))``: the model's target output
when only the features in ``S`` take their input values and every other
feature stays at the baseline (Greedy PIG, Axiotis et al. 2023, Eq. 3/4).

With ``batched=True`` one problem holds ``B`` examples, each with its own
baseline and target; it is the separable problem of choosing one ``k``-subset
``S_b`` per example to maximise ``Σ_b G_b(S_b)``, and the solvers handle all
examples in the same forward/backward passes.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from sparsesel.problems.base import Problem
from sparsesel.validation import check_choice, check_index_set, check_inference_mode, check_int

OUTPUTS = ("raw", "softmax", "log_softmax")


@dataclass(frozen=True, eq=False)
class Attribution(Problem):
    """Select the ``k`` features of ``x`` that best explain ``model(x)[target]``.

    Parameters
    ----------
    model : callable
        A differentiable torch model (``nn.Module`` or function) mapping a batch
        ``(B, *x.shape)`` to outputs ``(B, n_outputs)`` or ``(B,)``. Put modules in
        ``eval()`` mode first (dropout or batch statistics make ``G`` random): a
        module with a batch-norm, instance-norm (with running statistics) or
        dropout submodule in training mode is refused. The model is only called,
        never modified; its parameters get no ``.grad``.
    x : Tensor or array_like
        One input without batch dimension: an image ``(C, H, W)``/``(H, W)``,
        node features ``(N, F)``, a table row ``(d,)`` or a whole table ``(n, d)``
        (with a model that scores the table, e.g. :class:`~sparsesel.attribution.models.TableObjective`).
        With ``batched=True``: a batch ``(B, *example_shape)`` of ``B >= 1`` such inputs.
        Copied; float tensors keep their dtype, other numbers (e.g. integer
        counts) become float32. ``uint8`` (raw 0..255 pixels: divide by 255) and
        ``bool`` are refused.
    baseline : {"zeros", "black", "blurred", "mean"} or Tensor or array_like or float
        The absent input (see :mod:`sparsesel.attribution.baselines`); an array
        must have ``x``'s shape (``uint8``/``bool`` refused as for ``x``), a
        number (not a bool) fills it. With ``batched=True`` a name is applied to
        each example on its own (``"black"`` is each example's minimum), and an
        array may also have one example's shape (shared by every example).
    target : int or None, or sequence of int with ``batched=True``
        Column of the output to explain. Required when the model returns more
        than one output per input; ``None`` for ``(B,)`` or ``(B, 1)`` outputs.
        With ``batched=True``: one int for every example, or one per example
        (a sequence, array or tensor of ``B`` ints); stored as a tuple of ``B`` ints.
    k : int
        Number of features to select (per example), ``1 <= k <= n_features``.
    groups : None, "pixels" or array_like of int
        What a feature is (the same for every example of a batch). ``None``: every element of
        one example. ``"pixels"``: for
        ``(C, H, W)`` inputs, the ``C`` channels of a pixel form one feature
        (``H·W`` features, row-major). An integer array broadcastable to
        the example shape labels each element with its feature ``0..G−1`` (superpixels,
        table columns, graph nodes); every label must occur.
    output : {"raw", "softmax", "log_softmax"}
        Transform applied to the model's outputs (over dimension 1) before the
        target is taken. ``"softmax"`` makes ``G`` the target probability used by
        the SIC metric and by the Greedy PIG paper. Both transforms need at least
        two output columns (over one they are constant).
    batched : bool
        ``False`` (default): ``x`` is one input. ``True``: ``x`` is a batch of ``B``
        examples, each explained on its own (see Notes).

    Notes
    -----
    **Batches.** A batched problem is the separable problem of choosing one ``k``-subset
    ``S_b`` per example, maximising ``Σ_b G_b(S_b)``; the attribution solvers
    evaluate the path points of all examples in the same forward/backward passes,
    and their answers equal a loop over the examples. Its :class:`~sparsesel.result.Result`
    has ``selected`` = a tuple of ``B`` tuples (example ``b``'s features in the order
    chosen), ``objective`` = ``Σ_b G_b(S_b)``, ``info["objectives"]`` the ``B``
    values ``G_b(S_b)``, and every per-feature ``info`` entry (``attribution``,
    ``order``, ``rank_scores``, per-example scalars such as ``convergence_delta``)
    with a leading axis of length ``B``. A single input (``batched=False``) keeps
    the flat forms. :meth:`example` gives example ``b`` as a problem of its own.

    Raises
    ------
    TypeError
        ``model`` not callable, non-numeric ``x``, non-integer ``k``/``target``,
        a bool ``baseline``, or a model output that is not differentiable with
        respect to its input.
    ValueError
        Empty, non-finite, ``uint8`` or ``bool`` ``x``, a baseline of the wrong
        shape, ``k`` outside ``[1, n_features]``, a bad ``target`` (or a target
        sequence whose length is not ``B``), bad ``groups``,
        a module with batch norm or dropout in training mode, ``output`` other
        than ``"raw"`` on a single output column.
    """

    model: Callable[[torch.Tensor], torch.Tensor]
    x: Any
    baseline: Any = "zeros"
    target: Any = None
    k: int = 1
    groups: Any = None
    output: str = "raw"
    batched: bool = False

    #: ``G(S)`` is maximised: the features that keep the target output highest.
    sense: ClassVar[str] = "maximize"

    def __post_init__(self) -> None:
        if not callable(self.model):
            raise TypeError(f"model must be a callable torch model, got {type(self.model).__name__}")
        if not isinstance(self.batched, (bool, np.bool_)):
            raise TypeError(f"batched must be True or False, got {self.batched!r}")
        batched = bool(self.batched)
        check_inference_mode(self.model, "before building the Attribution problem")
        x = _as_float_tensor(self.x, "x")
        if batched and x.ndim < 2:
            raise ValueError(f"batched=True needs x of shape (B, *example_shape) with at least 2 axes, got {tuple(x.shape)}")
        output = check_choice(self.output, "output", OUTPUTS)
        inputs = x if batched else x.unsqueeze(0)
        baseline = self._make_baseline(x, inputs, batched)

        labels, n_features, feature_shape = feature_labels(self.groups, inputs[0])
        k = check_int(self.k, "k", low=1)
        if k > n_features:
            raise ValueError(f"k must be <= the number of features ({n_features}), got {k}")

        object.__setattr__(self, "x", x)
        object.__setattr__(self, "baseline", baseline)
        object.__setattr__(self, "k", k)
        object.__setattr__(self, "output", output)
        object.__setattr__(self, "batched", batched)
        object.__setattr__(self, "_inputs", inputs)
        object.__setattr__(self, "_baselines", baseline if batched else baseline.unsqueeze(0))
        object.__setattr__(self, "_labels", labels)
        object.__setattr__(self, "_flat_labels", labels.reshape(-1))
        object.__setattr__(self, "_n_features", n_features)
        object.__setattr__(self, "_feature_shape", feature_shape)
        object.__setattr__(self, "_targets", None)
        object.__setattr__(self, "target", self._check_model(self._check_targets(self.target)))

    def _make_baseline(self, x: torch.Tensor, inputs: torch.Tensor, batched: bool) -> torch.Tensor:
        """The baseline tensor (``x``'s shape) from a name, a number or an array."""
        from sparsesel.attribution.baselines import BASELINES, make_baseline

        if isinstance(self.baseline, (bool, np.bool_)):
            raise TypeError(
                f"baseline={self.baseline!r}: a bool is not a valid baseline; pass one of {BASELINES}, "
                "a number (the value of every absent element) or an array shaped like x"
            )
        if isinstance(self.baseline, str):
            if self.baseline not in BASELINES:
                raise ValueError(f"baseline must be one of {BASELINES} or an array shaped like x, got {self.baseline!r}")
            if batched:
                baseline = torch.stack([make_baseline(self.baseline, example) for example in inputs])
            else:
                baseline = make_baseline(self.baseline, x)
        elif isinstance(self.baseline, (int, float)) and not isinstance(self.baseline, bool):
            baseline = torch.full_like(x, float(self.baseline))
        else:
            baseline = _as_float_tensor(self.baseline, "baseline").to(dtype=x.dtype, device=x.device)
            if batched and baseline.shape == inputs.shape[1:]:
                baseline = baseline.unsqueeze(0).expand(x.shape).clone()
            if baseline.shape != x.shape:
                shared = f" or one example's shape {tuple(x.shape[1:])}" if batched else ""
                raise ValueError(
                    f"baseline has shape {tuple(baseline.shape)} but x has shape {tuple(x.shape)}; they must match{shared}"
                )
        if not torch.isfinite(baseline).all():
            raise ValueError("baseline contains NaN or infinite values")
        return baseline

    # ------------------------------------------------------------------ checks
    def _check_targets(self, target: Any) -> Any:
        """Batched problems: ``None``, one int or ``B`` ints (tuple); single inputs: unchanged."""
        if not self.batched or target is None or isinstance(target, (numbers.Integral, np.integer)):
            return target
        if isinstance(target, torch.Tensor):
            target = target.detach().cpu().numpy()
        if isinstance(target, np.ndarray):
            if target.ndim != 1:
                raise ValueError(f"target must be one int or a sequence of {self.n_examples} ints, got an array "
                                 f"of shape {target.shape}")
            target = target.tolist()
        if isinstance(target, (str, bytes)) or not isinstance(target, Sequence):
            raise TypeError(f"target must be an int, None or a sequence of {self.n_examples} ints, "
                            f"got {type(target).__name__}")
        if len(target) != self.n_examples:
            raise ValueError(f"target has {len(target)} entries but the batch has {self.n_examples} examples")
        return tuple(target)

    def _check_model(self, target: Any) -> Any:
        """Call the model on ``[x, baseline]`` once: output shape, target, differentiability."""
        n_examples = self.n_examples
        points = torch.cat([self._inputs, self._baselines]).requires_grad_(True)
        n_points = points.shape[0]
        try:
            with torch.enable_grad():
                raw = self.model(points)
        except Exception as exc:  # the user's model failed: say on what
            raise ValueError(f"model failed on a batch of shape {tuple(points.shape)}: {exc}") from exc
        if not isinstance(raw, torch.Tensor):
            raise TypeError(f"model must return a torch.Tensor, got {type(raw).__name__}")
        targets = target if isinstance(target, tuple) else (target,) * n_examples
        if raw.ndim == 2 and raw.shape[0] == n_points:
            n_outputs = raw.shape[1]
            if all(t is None for t in targets):
                if n_outputs != 1:
                    raise ValueError(f"target is required: the model returns {n_outputs} outputs per input")
                targets = (0,) * n_examples
            else:
                name = "target" if not isinstance(target, tuple) else "target[{}]"
                targets = tuple(check_int(t, name.format(b), low=0, high=n_outputs - 1) for b, t in enumerate(targets))
            if n_outputs == 1 and self.output != "raw":
                constant = "1" if self.output == "softmax" else "0"
                raise ValueError(
                    f"output={self.output!r} over a single output column is constant ({constant} for every input), "
                    "so every attribution would be 0; use output='raw' to explain the model's output itself "
                    "(or return one column per class)"
                )
        elif raw.ndim == 1 and raw.shape[0] == n_points:
            if any(t not in (None, 0) for t in targets):
                shown = target if self.batched else targets[0]
                raise ValueError(f"target must be None: the model returns one output per input, got target={shown!r}")
            if self.output != "raw":
                raise ValueError(f"output={self.output!r} needs a model with several outputs per input (B, C)")
            targets = None
        else:
            raise ValueError(
                f"model must map a batch (B, *x.shape) to (B,) or (B, n_outputs); for B={n_points} it returned "
                f"shape {tuple(raw.shape)}"
            )
        object.__setattr__(self, "_targets", None if targets is None else torch.tensor(targets, dtype=torch.long))
        target = None if targets is None else (targets if self.batched else targets[0])
        object.__setattr__(self, "target", target)
        values = self._select(raw, torch.arange(n_examples).repeat(2))
        if not torch.isfinite(values).all():
            raise ValueError(f"model output is not finite at x or at the baseline: {values.tolist()}")
        if not values.requires_grad:
            raise TypeError(
                "model output is not differentiable with respect to x (it has no grad_fn); "
                "use a torch model without .detach(), numpy or torch.no_grad() inside"
            )
        (grad,) = torch.autograd.grad(values.sum(), points, allow_unused=True)
        if grad is None:
            raise TypeError("model output is not differentiable with respect to x: it does not depend on the input")
        return target

    # ------------------------------------------------------------- properties
    @property
    def n_features(self) -> int:
        """Number of selectable features (groups) of one example."""
        return self._n_features

    @property
    def n_examples(self) -> int:
        """``B`` for a batched problem, 1 for a single input."""
        return self._inputs.shape[0]

    @property
    def example_shape(self) -> tuple[int, ...]:
        """Shape of one example: ``x.shape`` for a single input, ``x.shape[1:]`` for a batch."""
        return tuple(self._inputs.shape[1:])

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """Shape of one example's attribution map: its shape (elements), ``(H, W)`` (pixels) or ``(G,)`` (groups)."""
        return self._feature_shape

    @property
    def labels(self) -> torch.Tensor:
        """Feature index of every element of one example (long tensor of :attr:`example_shape`)."""
        return self._labels

    @property
    def inputs(self) -> torch.Tensor:
        """The examples as a batch ``(B, *example_shape)`` (``x[None]`` for a single input; a view, do not modify)."""
        return self._inputs

    @property
    def baselines(self) -> torch.Tensor:
        """The baselines as a batch ``(B, *example_shape)`` (a view, do not modify)."""
        return self._baselines

    @property
    def targets(self) -> torch.Tensor | None:
        """The target column of each example, long ``(B,)``, or ``None`` for a model with one output per input."""
        return self._targets

    def example(self, index: int) -> Attribution:
        """Example ``index`` of a batched problem as a single-input problem (same model, k, groups, output)."""
        index = check_int(index, "index", low=0, high=self.n_examples - 1)
        target = None if self._targets is None else int(self._targets[index])
        return Attribution(self.model, self._inputs[index], baseline=self._baselines[index], target=target, k=self.k,
                           groups=self.groups, output=self.output)

    # ------------------------------------------------------------- evaluation
    def _row_examples(self, n_rows: int, examples: Any) -> torch.Tensor | None:
        """The example of each of ``n_rows`` rows (``None`` for a single input)."""
        if not self.batched:
            return None
        if examples is None:
            if n_rows != self.n_examples:
                raise ValueError(f"examples is required: {n_rows} rows for a batch of {self.n_examples} examples "
                                 "(say which example each row belongs to)")
            return torch.arange(n_rows)
        examples = torch.as_tensor(examples, dtype=torch.long)
        if examples.shape != (n_rows,):
            raise ValueError(f"examples must have shape ({n_rows},), one example index per row, got {tuple(examples.shape)}")
        return examples

    def _select(self, raw: torch.Tensor, examples: torch.Tensor | None = None) -> torch.Tensor:
        if self.target is None:
            return raw
        if self.output == "softmax":
            raw = torch.softmax(raw, dim=1)
        elif self.output == "log_softmax":
            raw = torch.log_softmax(raw, dim=1)
        if not self.batched:
            return raw[:, self.target]
        return raw.gather(1, self._targets[examples].unsqueeze(1)).squeeze(1)

    def evaluate(self, inputs: torch.Tensor, examples: Any = None) -> torch.Tensor:
        """Target outputs ``(N,)`` of the model on a batch ``(N, *example_shape)`` (differentiable).

        ``examples`` (batched problems): long ``(N,)``, the example whose target each row
        takes; default ``0..B−1`` when ``N = B``.
        """
        return self._select(self.model(inputs), self._row_examples(inputs.shape[0], examples))

    def compose(self, weights: torch.Tensor, examples: Any = None) -> torch.Tensor:
        """Inputs ``b + w[labels] ⊙ (x − b)`` ``(N, *example_shape)`` for per-feature weights ``(N, n_features)`` in ``[0, 1]``.

        ``examples`` (batched problems): long ``(N,)``, the example each row mixes;
        default ``0..B−1`` when ``N = B``.
        """
        weights = torch.as_tensor(weights, dtype=self.x.dtype, device=self.x.device)
        if weights.ndim != 2 or weights.shape[1] != self.n_features:
            raise ValueError(f"weights must have shape (B, {self.n_features}), got {tuple(weights.shape)}")
        expanded = weights[:, self._flat_labels].reshape((weights.shape[0], *self.example_shape))
        if not self.batched:
            return self.baseline + expanded * (self.x - self.baseline)
        rows = self._row_examples(weights.shape[0], examples)
        base = self._baselines[rows]
        return base + expanded * (self._inputs[rows] - base)

    def indicator(self, subsets: Sequence[Sequence[int]]) -> torch.Tensor:
        """0/1 weights ``(len(subsets), n_features)`` of feature subsets."""
        weights = torch.zeros(len(subsets), self.n_features, dtype=self.x.dtype)
        for row, subset in enumerate(subsets):
            weights[row, list(self.check_subset(subset))] = 1.0
        return weights

    def check_subset(self, subset: Sequence[int]) -> list[int]:
        """Validate feature indices (distinct, in range) and return them as a list."""
        return check_index_set(list(subset), "subset", self.n_features, allow_empty=True).tolist()

    def objective(self, subset: Sequence[Any]) -> float:
        """``G(S)``: the target output with only ``subset`` at its input values.

        Batched problems: ``subset`` holds one subset per example and the value is ``Σ_b G_b(S_b)``.
        """
        return float(self.objectives([subset])[0])

    def objectives(self, subsets: Sequence[Sequence[Any]]) -> np.ndarray:
        """``G`` for several subsets at once, shape ``(len(subsets),)`` (batched: sums over the examples)."""
        if not self.batched:
            with torch.no_grad():
                return self.evaluate(self.compose(self.indicator(subsets))).double().cpu().numpy()
        return np.asarray([self.example_objectives(selection).sum() for selection in subsets])

    def example_objectives(self, selection: Sequence[Sequence[int]]) -> np.ndarray:
        """``G_b(S_b)`` of every example, shape ``(B,)``, for one subset per example (one forward pass).

        A single input takes a sequence holding its one subset.
        """
        selection = list(selection)
        if len(selection) != self.n_examples:
            raise ValueError(f"selection must hold one subset per example ({self.n_examples}), got {len(selection)}")
        weights = self.indicator(selection)
        with torch.no_grad():
            values = self.evaluate(self.compose(weights, torch.arange(self.n_examples) if self.batched else None),
                                   torch.arange(self.n_examples) if self.batched else None)
        return values.double().cpu().numpy()

    def to_features(self, element_values: torch.Tensor) -> torch.Tensor:
        """Sum element-wise values of shape ``(..., *example_shape)`` into features ``(..., n_features)``."""
        leading = tuple(element_values.shape[: element_values.ndim - len(self.example_shape)])
        if tuple(element_values.shape[len(leading):]) != self.example_shape:
            raise ValueError(f"element values must end with the example shape {self.example_shape}, "
                             f"got {tuple(element_values.shape)}")
        flat = element_values.reshape(-1, int(np.prod(self.example_shape)))
        out = torch.zeros(flat.shape[0], self.n_features, dtype=flat.dtype, device=flat.device)
        out.index_add_(1, self._flat_labels, flat)
        return out.reshape((*leading, self.n_features))

    def to_map(self, feature_values: Any) -> np.ndarray:
        """Per-feature values ``(..., n_features)`` as an array of shape ``(..., *feature_shape)``.

        Any other array of exactly ``n_features`` values becomes one map of :attr:`feature_shape`.
        """
        values = feature_values.detach().cpu().numpy() if isinstance(feature_values, torch.Tensor) else np.asarray(feature_values)
        if values.ndim >= 1 and values.shape[-1] == self.n_features:
            return values.reshape((*values.shape[:-1], *self.feature_shape))
        return values.reshape(self.feature_shape)


def _as_float_tensor(value: Any, name: str) -> torch.Tensor:
    """A float copy of ``value``; refuses uint8 (raw pixels) and bool, whose float values are not what a model reads."""
    if isinstance(value, torch.Tensor):
        _check_input_dtype(str(value.dtype).removeprefix("torch."), value.dtype in (torch.uint8, torch.bool), name)
        tensor = value.detach().clone()
        if not tensor.is_floating_point():
            tensor = tensor.float()
    else:
        try:
            array = np.array(value, copy=True)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be numeric; could not convert it to floats ({exc})") from None
        _check_input_dtype(str(array.dtype), array.dtype in (np.uint8, np.bool_), name)
        try:
            tensor = torch.from_numpy(array.astype(np.float32 if array.dtype != np.float64 else np.float64))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be numeric; could not convert it to floats ({exc})") from None
    if tensor.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(tensor.shape)})")
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return tensor


def _check_input_dtype(dtype_name: str, refused: bool, name: str) -> None:
    """Refuse uint8 (0..255 pixel values) and bool inputs: turning them into floats silently changes their meaning."""
    if not refused:
        return
    if dtype_name == "uint8":
        raise ValueError(
            f"{name} has dtype uint8 (raw 0..255 pixel values?), which would be used as floats 0..255 while image "
            f"models (the built-in ones included) expect [0, 1]; convert it to float first, e.g. {name} / 255 for "
            "an image, or .astype(float) / .float() if 0..255 is really the scale the model reads"
        )
    raise ValueError(
        f"{name} has dtype bool; convert it to a float array or tensor first (e.g. .astype(float) or .float()) "
        "to say which values the model should see"
    )


def feature_labels(groups: Any, x: torch.Tensor) -> tuple[torch.Tensor, int, tuple[int, ...]]:
    """Feature label of each element of one example ``x``, the number of features and the map shape.

    Only ``x``'s shape matters (and ``groups``, see :class:`Attribution`); raises as the problem does.
    """
    if groups is None:
        return torch.arange(x.numel()).reshape(x.shape), x.numel(), tuple(x.shape)
    if isinstance(groups, str):
        if groups != "pixels":
            raise ValueError(f"groups must be None, 'pixels' or an integer array, got {groups!r}")
        if x.ndim == 2:
            return torch.arange(x.numel()).reshape(x.shape), x.numel(), tuple(x.shape)
        if x.ndim != 3:
            raise ValueError(f"groups='pixels' needs an image x of shape (C, H, W) or (H, W), got {tuple(x.shape)}")
        _, height, width = x.shape
        labels = torch.arange(height * width).reshape(1, height, width).expand(x.shape).contiguous()
        return labels, height * width, (height, width)
    array = groups.detach().cpu().numpy() if isinstance(groups, torch.Tensor) else np.asarray(groups)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"groups must hold integer feature labels, got dtype {array.dtype}")
    try:
        array = np.broadcast_to(array, tuple(x.shape))
    except ValueError:
        raise ValueError(f"groups has shape {array.shape}, which does not broadcast to x's shape {tuple(x.shape)}") from None
    if array.min() < 0:
        raise ValueError(f"groups labels must be >= 0, got {int(array.min())}")
    n_groups = int(array.max()) + 1
    missing = np.setdiff1d(np.arange(n_groups), np.unique(array))
    if missing.size:
        raise ValueError(f"groups must use every label 0..{n_groups - 1}; missing {missing[:10].tolist()}")
    return torch.from_numpy(array.astype(np.int64)).clone(), n_groups, (n_groups,)
