"""Attribution: choose the k input features that explain a model's output.

The set function is ``G(S) = f(b + m_S ⊙ (x − b))``: the model's target output
when only the features in ``S`` take their input values and every other
feature stays at the baseline (Greedy PIG, Axiotis et al. 2023, Eq. 3/4).
"""

from __future__ import annotations

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
        Copied; float tensors keep their dtype, other numbers (e.g. integer
        counts) become float32. ``uint8`` (raw 0..255 pixels: divide by 255) and
        ``bool`` are refused.
    baseline : {"zeros", "black", "blurred", "mean"} or Tensor or array_like or float
        The absent input (see :mod:`sparsesel.attribution.baselines`); an array
        must have ``x``'s shape (``uint8``/``bool`` refused as for ``x``), a
        number (not a bool) fills it.
    target : int or None
        Column of the output to explain. Required when the model returns more
        than one output per input; ``None`` for ``(B,)`` or ``(B, 1)`` outputs.
    k : int
        Number of features to select, ``1 <= k <= n_features``.
    groups : None, "pixels" or array_like of int
        What a feature is. ``None``: every element of ``x``. ``"pixels"``: for
        ``(C, H, W)`` inputs, the ``C`` channels of a pixel form one feature
        (``H·W`` features, row-major). An integer array broadcastable to
        ``x.shape`` labels each element with its feature ``0..G−1`` (superpixels,
        table columns, graph nodes); every label must occur.
    output : {"raw", "softmax", "log_softmax"}
        Transform applied to the model's outputs (over dimension 1) before the
        target is taken. ``"softmax"`` makes ``G`` the target probability used by
        the SIC metric and by the Greedy PIG paper. Both transforms need at least
        two output columns (over one they are constant).

    Raises
    ------
    TypeError
        ``model`` not callable, non-numeric ``x``, non-integer ``k``/``target``,
        a bool ``baseline``, or a model output that is not differentiable with
        respect to its input.
    ValueError
        Empty, non-finite, ``uint8`` or ``bool`` ``x``, a baseline of the wrong
        shape, ``k`` outside ``[1, n_features]``, a bad ``target``, bad ``groups``,
        a module with batch norm or dropout in training mode, ``output`` other
        than ``"raw"`` on a single output column.
    """

    model: Callable[[torch.Tensor], torch.Tensor]
    x: Any
    baseline: Any = "zeros"
    target: int | None = None
    k: int = 1
    groups: Any = None
    output: str = "raw"

    #: ``G(S)`` is maximised: the features that keep the target output highest.
    sense: ClassVar[str] = "maximize"

    def __post_init__(self) -> None:
        from sparsesel.attribution.baselines import BASELINES, make_baseline

        if not callable(self.model):
            raise TypeError(f"model must be a callable torch model, got {type(self.model).__name__}")
        check_inference_mode(self.model, "before building the Attribution problem")
        x = _as_float_tensor(self.x, "x")
        output = check_choice(self.output, "output", OUTPUTS)

        if isinstance(self.baseline, (bool, np.bool_)):
            raise TypeError(
                f"baseline={self.baseline!r}: a bool is not a valid baseline; pass one of {BASELINES}, "
                "a number (the value of every absent element) or an array shaped like x"
            )
        if isinstance(self.baseline, str):
            if self.baseline not in BASELINES:
                raise ValueError(f"baseline must be one of {BASELINES} or an array shaped like x, got {self.baseline!r}")
            baseline = make_baseline(self.baseline, x)
        elif isinstance(self.baseline, (int, float)) and not isinstance(self.baseline, bool):
            baseline = torch.full_like(x, float(self.baseline))
        else:
            baseline = _as_float_tensor(self.baseline, "baseline").to(dtype=x.dtype, device=x.device)
            if baseline.shape != x.shape:
                raise ValueError(
                    f"baseline has shape {tuple(baseline.shape)} but x has shape {tuple(x.shape)}; they must match"
                )
        if not torch.isfinite(baseline).all():
            raise ValueError("baseline contains NaN or infinite values")

        labels, n_features, feature_shape = _feature_labels(self.groups, x)
        k = check_int(self.k, "k", low=1)
        if k > n_features:
            raise ValueError(f"k must be <= the number of features ({n_features}), got {k}")

        object.__setattr__(self, "x", x)
        object.__setattr__(self, "baseline", baseline)
        object.__setattr__(self, "k", k)
        object.__setattr__(self, "output", output)
        object.__setattr__(self, "_labels", labels)
        object.__setattr__(self, "_flat_labels", labels.reshape(-1))
        object.__setattr__(self, "_n_features", n_features)
        object.__setattr__(self, "_feature_shape", feature_shape)
        object.__setattr__(self, "target", self._check_model(self.target))

    # ------------------------------------------------------------------ checks
    def _check_model(self, target: Any) -> int | None:
        """Call the model on ``[x, baseline]`` once: output shape, target, differentiability."""
        points = torch.stack([self.x, self.baseline]).requires_grad_(True)
        try:
            with torch.enable_grad():
                raw = self.model(points)
        except Exception as exc:  # the user's model failed: say on what
            raise ValueError(f"model failed on a batch of shape {tuple(points.shape)}: {exc}") from exc
        if not isinstance(raw, torch.Tensor):
            raise TypeError(f"model must return a torch.Tensor, got {type(raw).__name__}")
        if raw.ndim == 2 and raw.shape[0] == 2:
            n_outputs = raw.shape[1]
            if target is None:
                if n_outputs != 1:
                    raise ValueError(f"target is required: the model returns {n_outputs} outputs per input")
                target = 0
            else:
                target = check_int(target, "target", low=0, high=n_outputs - 1)
            if n_outputs == 1 and self.output != "raw":
                constant = "1" if self.output == "softmax" else "0"
                raise ValueError(
                    f"output={self.output!r} over a single output column is constant ({constant} for every input), "
                    "so every attribution would be 0; use output='raw' to explain the model's output itself "
                    "(or return one column per class)"
                )
        elif raw.ndim == 1 and raw.shape[0] == 2:
            if target not in (None, 0):
                raise ValueError(f"target must be None: the model returns one output per input, got target={target!r}")
            if self.output != "raw":
                raise ValueError(f"output={self.output!r} needs a model with several outputs per input (B, C)")
            target = None
        else:
            raise ValueError(
                f"model must map a batch (B, *x.shape) to (B,) or (B, n_outputs); for B=2 it returned shape {tuple(raw.shape)}"
            )
        object.__setattr__(self, "target", target)
        values = self._select(raw)
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
        """Number of selectable features (groups)."""
        return self._n_features

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """Shape of an attribution map: ``x.shape`` (elements), ``(H, W)`` (pixels) or ``(G,)`` (groups)."""
        return self._feature_shape

    @property
    def labels(self) -> torch.Tensor:
        """Feature index of every element of ``x`` (long tensor of ``x.shape``)."""
        return self._labels

    # ------------------------------------------------------------- evaluation
    def _select(self, raw: torch.Tensor) -> torch.Tensor:
        if self.target is None:
            return raw
        if self.output == "softmax":
            raw = torch.softmax(raw, dim=1)
        elif self.output == "log_softmax":
            raw = torch.log_softmax(raw, dim=1)
        return raw[:, self.target]

    def evaluate(self, inputs: torch.Tensor) -> torch.Tensor:
        """Target outputs ``(B,)`` of the model on a batch ``(B, *x.shape)`` (differentiable)."""
        return self._select(self.model(inputs))

    def compose(self, weights: torch.Tensor) -> torch.Tensor:
        """Inputs ``b + w[labels] ⊙ (x − b)`` for per-feature weights ``(B, n_features)`` in ``[0, 1]``."""
        weights = torch.as_tensor(weights, dtype=self.x.dtype, device=self.x.device)
        if weights.ndim != 2 or weights.shape[1] != self.n_features:
            raise ValueError(f"weights must have shape (B, {self.n_features}), got {tuple(weights.shape)}")
        expanded = weights[:, self._flat_labels].reshape((weights.shape[0], *self.x.shape))
        return self.baseline + expanded * (self.x - self.baseline)

    def indicator(self, subsets: Sequence[Sequence[int]]) -> torch.Tensor:
        """0/1 weights ``(len(subsets), n_features)`` of feature subsets."""
        weights = torch.zeros(len(subsets), self.n_features, dtype=self.x.dtype)
        for row, subset in enumerate(subsets):
            weights[row, list(self.check_subset(subset))] = 1.0
        return weights

    def check_subset(self, subset: Sequence[int]) -> list[int]:
        """Validate feature indices (distinct, in range) and return them as a list."""
        return check_index_set(list(subset), "subset", self.n_features, allow_empty=True).tolist()

    def objective(self, subset: Sequence[int]) -> float:
        """``G(S)``: the target output with only ``subset`` at its input values."""
        return float(self.objectives([subset])[0])

    def objectives(self, subsets: Sequence[Sequence[int]]) -> np.ndarray:
        """``G`` for several subsets at once, shape ``(len(subsets),)``."""
        with torch.no_grad():
            return self.evaluate(self.compose(self.indicator(subsets))).double().cpu().numpy()

    def to_features(self, element_values: torch.Tensor) -> torch.Tensor:
        """Sum element-wise values of ``x.shape`` (or ``(B, *x.shape)``) into features ``(…, n_features)``."""
        batched = element_values.ndim == self.x.ndim + 1
        flat = element_values.reshape(-1, self.x.numel()) if batched else element_values.reshape(1, -1)
        out = torch.zeros(flat.shape[0], self.n_features, dtype=flat.dtype, device=flat.device)
        out.index_add_(1, self._flat_labels, flat)
        return out if batched else out[0]

    def to_map(self, feature_values: Any) -> np.ndarray:
        """Per-feature values ``(n_features,)`` as an array of :attr:`feature_shape`."""
        values = feature_values.detach().cpu().numpy() if isinstance(feature_values, torch.Tensor) else np.asarray(feature_values)
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


def _feature_labels(groups: Any, x: torch.Tensor) -> tuple[torch.Tensor, int, tuple[int, ...]]:
    """Feature label of each element, the number of features and the map shape."""
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
