"""Sequential Attention for feature selection (Yasuda et al., ICLR 2023), in torch.

The algorithm trains a model together with one attention logit per feature.
The model sees ``x ⊙ a`` where the attention weights ``a`` are

* ``a_i = 1`` for a feature already selected,
* ``a_i = softmax(logits restricted to the unselected features)_i`` otherwise.

Training is one pass ("one-pass" Sequential Attention): the optimiser steps are
split into a dense warm-up (every weight 1, logits unused) followed by ``k``
equal segments. At the end of each segment the unselected feature with the
largest attention weight joins the selection, the logits are re-initialised
(the official code's ``reset_weights=True``: tiny Gaussian logits, fresh
optimiser moments for them) and the model weights are kept (warm start).

Two deliberate differences from the official code (google-research
``sequential_attention``), both documented in the solver's docstring:

* the pick is made at the *end* of a segment from the logits trained in it. The
  official code picks at the *start* of a phase, so its first pick comes from the
  untrained initial logits (the warm-up trains no logits);
* the penalty ``(ridge/2)·Σ_{i∉S} ‖W_i‖²`` on the first-layer rows of the
  unselected features (0 for the MLP by default).

The linear model (``model="linear"``) does not train by default
(``inner="exact"``): each step solves the attention-weighted ridge problem in
closed form at the re-initialised logits and picks the feature whose logit the
exact gradient raises most — the paper's linear Sequential Attention with its
inner problem solved to optimality, whose picks are OMP's in the limit
``ridge → ∞`` (the default). The derivation, the conditions and what happens
outside them are in :mod:`solvers.sequential_attention_exact`.
``inner="adam"`` trains the linear model like the others (one pass of Adam).

The exact linear model
----------------------
``inner="exact"`` (linear model only, its default): at each step the attention-weighted
ridge problem is solved in closed form at the re-initialised, uniform
attention and the pick is the feature whose logit the exact gradient
raises most, ``argmax_j |x̃_jᵀ r_ridge|`` (see
:mod:`solvers.sequential_attention_exact`). With ``ridge=None`` (the limit
``ridge → ∞``) the picks are exactly those of Orthogonal Matching Pursuit
on the columns the model sees (standardised unless ``standardize=False``),
in the same order, with exact ties going to the lowest index; a finite
``ridge`` is OMP's pick when the gap between the two largest
``|x̃_jᵀ r_S|`` exceeds ``2σ²/(σ² + n·ridge·m²)·‖A ᵀr_S‖₂`` (``m``
unselected features, ``A`` their columns projected off the selected ones,
``σ = ‖A‖₂``) and may differ otherwise. ``epochs``, ``warmup``, ``lr``,
``batch_size``, ``hidden``, ``weight_decay`` and ``seed`` do not apply
(the result is deterministic); options set anyway are listed in
``info["unused_options"]``. ``"adam"`` (the only choice for the logistic and
MLP models) trains, as above.

With ``inner="exact"``: ``trace`` has ``step``,
``feature``, ``attention`` and ``correlation`` (``c`` of the pick; and
``padded: True`` where the residual is orthogonal to every remaining
column, so the lowest-index unselected feature completes the selection);
``info`` has ``correlations`` (array ``(k, d)``: ``c = X̃ᵀ r_ridge`` over
the candidates at each pick, 0 elsewhere), ``attention`` (the rows
``c²/Σc²``: the logit gradient is ``−(c_j² − mean c²)/(n²·ridge·m²)``,
an affine function of it), ``inner``, ``ridge`` (``inf`` for the limit),
``standardize`` and ``unused_options``.

Standardisation
---------------
Work on columns scaled to unit variance (centred first when there is an
intercept; without one, ``inner="exact"`` scales them to unit root mean
square; constant or all-zero columns are left at 0). The columns are
first divided by powers of two near their magnitudes (exact), so columns
of magnitude ``1e±200`` standardise without overflow. The exact linear
model then picks like OMP run on these standardised columns; with
``False`` the raw columns are used and the picks are those of
scikit-learn's ``OrthogonalMatchingPursuit`` on ``X`` itself (at any
column scale with ``ridge=None``). With ``inner="adam"`` and ``False``, a
training whose loss ends no lower than it started (Adam's steps cannot
fit columns of magnitudes far from 1) is refused with a ``ValueError``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from sparsesel.problems.column_scaling import column_scaling
from sparsesel.problems.feature_selection import FeatureSelection
from sparsesel.registry import register_solver
from sparsesel.result import Result
from sparsesel.validation import check_choice, check_int
from solvers.sequential_attention_exact import exact_linear_selection

MODELS = ("linear", "logistic", "mlp")

#: How the inner problem is solved: in closed form (linear model only) or by one pass of Adam.
INNER = ("exact", "adam")

#: Options that only the trained (``inner="adam"``) variants use.
TRAINING_OPTIONS = ("epochs", "warmup", "lr", "batch_size")

#: Defaults that depend on the model: (epochs, warm-up fraction, learning rate, ridge, batch size).
#: The linear models are trained full batch, long enough per segment to be close to convergence
#: (``epochs_per_step`` is multiplied by ``k``); the MLP defaults were chosen on scikit-learn's
#: digits (k=20: held-out accuracy of a logistic regression refit on the picks, over 5 seeds and
#: 2 splits, against training cost).
_DEFAULTS: dict[str, dict[str, Any]] = {
    "linear": {"epochs_per_step": 100, "warmup": 0.0, "lr": 0.1, "ridge": 1.0, "batch_size": None},
    "logistic": {"epochs_per_step": 100, "warmup": 0.0, "lr": 0.1, "ridge": 1.0, "batch_size": None},
    "mlp": {"epochs_per_step": 15, "warmup": 0.1, "lr": 0.03, "ridge": 0.0, "batch_size": 512},
}

#: Standard deviation of the re-initialised logits (the official code's initialiser).
LOGIT_INIT_STD = 1e-5


@register_solver(
    "sequential_attention",
    kinds=(FeatureSelection,),
    description="Sequential Attention (ICLR 2023): linear model solved exactly (OMP's picks); logistic/MLP: one training pass, one pick per segment (torch)",
)
def sequential_attention(problem: FeatureSelection, *, model: str | None = None, inner: str | None = None,
                         epochs: int | None = None, warmup: float | None = None, hidden: int = 64,
                         lr: float | None = None, batch_size: int | None = None, weight_decay: float = 0.0,
                         ridge: float | None = None, standardize: bool = True, seed: int = 0,
                         num_threads: int | None = 1, progress: bool = False) -> Result:
    """Select ``problem.k`` features by Sequential Attention.

    Parameters
    ----------
    problem : FeatureSelection
        ``X`` of shape ``(n, d)``, ``y`` of shape ``(n,)``, budget ``k`` and loss.
    model : {"linear", "logistic", "mlp"}, optional
        The predictor trained with the attention logits. ``"linear"`` (squared loss only) and ``"logistic"``
        (logistic loss only; multinomial with more than two classes, trained by cross-entropy) are linear
        predictors; ``"mlp"`` has one hidden ReLU layer of width ``hidden`` and works with both losses. Default:
        ``"linear"`` for ``loss="squared"``, ``"logistic"`` for ``loss="logistic"``.
    inner : {"exact", "adam"}, optional
        How the model's weights are fitted: ``"exact"`` (linear model only, its default) in closed form at each step
        ("The exact linear model" in this module's docstring; training options set anyway are listed in
        ``info["unused_options"]``); ``"adam"``: one training pass of Adam with the logits.
    epochs : int, optional
        Total number of passes over the data, warm-up included. They are cut into a dense warm-up and ``k`` equal
        segments (counted in optimiser steps); at least one step per segment is required. Default: ``100·k`` for the
        linear models (full batch: near convergence in every segment), ``15·k`` for the MLP.
    warmup : float, optional
        Fraction in ``[0, 1)`` of the steps trained densely (every attention weight 1, logits frozen) before the
        first segment. Default 0 for the linear models, 0.1 for the MLP (the official code's ``start_percentage``).
    hidden : int
        Width of the MLP's hidden layer (ignored by the linear models).
    lr : float, optional
        Adam learning rate for the model and the logits. Default 0.1 (linear models), 0.03 (MLP).
    batch_size : int, optional
        Mini-batch size; a value ``>= n`` trains on the full batch. Default: full batch for the linear models, 512
        for the MLP. Batches are reshuffled every epoch by a ``torch.Generator`` seeded by ``seed``.
    weight_decay : float
        L2 penalty (Adam's ``weight_decay``) on every model weight (not the logits).
    ridge : float, optional
        Strength of the penalty ``(ridge/2)·Σ_{i∉S}‖W_i‖²`` on the first-layer weights of the unselected features
        (selected features are not penalised), added to the mean training loss. ``inner="exact"``: ``None``
        (default) is the limit ``ridge → ∞`` (OMP's picks); a finite value must be > 0 (at 0 the attention gets no
        gradient). ``inner="adam"``: default 1 for the linear models, 0 for the MLP.
    standardize : bool
        Work on columns scaled to unit variance (centred first when there is an intercept); ``False`` uses the raw
        columns (see "Standardisation" in this module's docstring).
    seed : int
        Seeds the ``torch.Generator`` used for the initial weights, the logits and the batch order. No global random
        state is read or changed.
    num_threads : int, optional
        Torch intra-op threads while training (``torch.set_num_threads``; the previous value is restored
        afterwards). The default 1 is the fastest for the small dense problems this solver targets and avoids thread
        oversubscription on busy machines; ``None`` keeps torch's current setting.
    progress : bool
        Show a tqdm progress bar over the optimiser steps.

    Returns
    -------
    Result
        ``selected``: the ``k`` features in the order they were picked; ``objective``:
        ``problem.objective(selected)`` (loss of the refit model); ``status``: ``"feasible"``; ``trace``: one dict
        per pick (``step``, ``feature``, ``attention`` weight of the pick, ``train_loss`` = training loss of the
        segment's last optimiser step, without the ridge term, ``epoch`` in which the pick was made); ``info``:
        ``attention`` (array ``(k, d)``: row ``j`` holds the softmax weights over the features unselected at pick
        ``j``, 0 for those already selected), ``model``, ``epochs``, ``warmup_steps``, ``steps_per_segment``,
        ``final_train_loss`` (mean loss of the last epoch) and the resolved options. With ``inner="exact"``, see
        "The exact linear model" in this module's docstring.

    Raises
    ------
    ValueError
        An unknown ``model`` or ``inner``, a model that does not fit the loss, ``inner="exact"`` with a model other
        than linear, ``ridge=0`` with ``inner="exact"``, or an option out of range (each message names the option).
    TypeError
        A non-integer ``epochs``, ``hidden``, ``batch_size`` or ``seed``, or a sparse ``X`` (torch needs it dense).
    """
    options = _resolve_options(problem, model=model, inner=inner, epochs=epochs, warmup=warmup, hidden=hidden,
                               lr=lr, batch_size=batch_size, weight_decay=weight_decay, ridge=ridge,
                               standardize=standardize, seed=seed, num_threads=num_threads, progress=progress)
    if options["inner"] == "exact":
        return _exact_result(problem, options)
    return _trained_result(problem, options)


def _trained_result(problem: FeatureSelection, options: dict[str, Any]) -> Result:
    """One pass of Sequential Attention training (``inner="adam"``) with the resolved ``options``, as a Result."""
    previous_threads = torch.get_num_threads()
    try:
        if options["num_threads"] is not None:
            torch.set_num_threads(options["num_threads"])
        trainer = _AttentionTrainer(problem, options)
        selected, trace, attention, final_loss = trainer.run()
    finally:
        torch.set_num_threads(previous_threads)
    _check_training_progress(problem, options, trainer.initial_loss, final_loss)
    info = {
        "attention": attention,
        "final_train_loss": final_loss,
        "warmup_steps": trainer.warmup_steps,
        "steps_per_segment": trainer.steps_per_segment,
        **{key: value for key, value in options.items() if key != "progress"},
    }
    return problem.result(selected, trace=trace, **info)


def _check_training_progress(problem: FeatureSelection, options: dict[str, Any], initial: float, final: float) -> None:
    """Refuse picks made by a training that diverged (or, on raw columns, never moved).

    A non-finite final loss is always refused. With ``standardize=False`` a final loss not
    below the first step's is refused too: Adam's steps (``lr`` in the raw units) cannot
    fit columns whose magnitudes are far from 1, and the attention then picks noise.
    """
    diverged = not math.isfinite(final)
    stalled = not options["standardize"] and initial > 0 and final >= initial * (1 - 1e-9)
    if not (diverged or stalled):
        return
    spread = float(np.max(problem.scaling.x_spread))
    what = "diverged" if diverged or final > initial else "made no progress"
    remedy = (
        "use standardize=True (the default) or rescale X" if not options["standardize"] else "lower lr"
    )
    raise ValueError(
        f"sequential_attention: training {what} (training loss {initial:.3g} at the first step, {final:.3g} "
        f"at the end) on columns of X spread over up to {spread:.1e}: {remedy}"
    )


def _standardized(X: np.ndarray) -> np.ndarray:
    """Columns of ``X`` (n, d) centred and scaled to unit variance; constant columns only centred.

    The centred columns are first divided by powers of two near their magnitudes (exact), so
    the variances neither overflow nor underflow for columns of magnitude ``1e±200``.
    """
    scaling = column_scaling(X, None, fit_intercept=True)
    X = (X - scaling.x_mean) / scaling.x_scale
    std = X.std(axis=0)
    std[std == 0] = 1.0
    return X / std


def _check_float(value: Any, name: str, low: float, high: float | None = None, *, low_open: bool = False,
                 high_open: bool = True) -> float:
    """Check that ``value`` is a real number within the given interval."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    below = value <= low if low_open else value < low
    above = high is not None and (value >= high if high_open else value > high)
    if not math.isfinite(value) or below or above:
        left = "(" if low_open else "["
        right = ")" if high is None or high_open else "]"
        upper = "inf" if high is None else f"{high:g}"
        raise ValueError(f"{name} must lie in {left}{low:g}, {upper}{right}, got {value!r}")
    return value


def _resolve_options(problem: FeatureSelection, **options: Any) -> dict[str, Any]:
    """Validate the options and fill the model-dependent defaults."""
    if not isinstance(problem, FeatureSelection):
        raise TypeError(f"sequential_attention expects a FeatureSelection, got {type(problem).__name__}")
    problem.require_dense("sequential_attention")
    model = options["model"]
    if model is None:
        model = "linear" if problem.loss == "squared" else "logistic"
    model = check_choice(model, "model", MODELS)
    if model == "linear" and problem.loss != "squared":
        raise ValueError("model='linear' needs loss='squared'; use model='logistic' or 'mlp' for loss='logistic'")
    if model == "logistic" and problem.loss != "logistic":
        raise ValueError("model='logistic' needs loss='logistic'; use model='linear' or 'mlp' for loss='squared'")
    inner = options["inner"]
    inner = ("exact" if model == "linear" else "adam") if inner is None else check_choice(inner, "inner", INNER)
    if inner == "exact" and model != "linear":
        raise ValueError(
            f"inner='exact' solves the linear model only; model={model!r} is trained (inner='adam')"
        )
    if inner == "exact":
        return _resolve_exact_options(options)
    defaults = _DEFAULTS[model]
    k = problem.k
    epochs = options["epochs"]
    epochs = defaults["epochs_per_step"] * k if epochs is None else check_int(epochs, "epochs", low=1)
    warmup = options["warmup"]
    warmup = defaults["warmup"] if warmup is None else _check_float(warmup, "warmup", 0.0, 1.0)
    hidden = check_int(options["hidden"], "hidden", low=1)
    lr = options["lr"]
    lr = defaults["lr"] if lr is None else _check_float(lr, "lr", 0.0, None, low_open=True)
    batch_size = options["batch_size"]
    if batch_size is None:
        batch_size = defaults["batch_size"]
    else:
        batch_size = check_int(batch_size, "batch_size", low=1)
    weight_decay = _check_float(options["weight_decay"], "weight_decay", 0.0, None)
    ridge = options["ridge"]
    ridge = defaults["ridge"] if ridge is None else _check_float(ridge, "ridge", 0.0, None)
    if not isinstance(options["standardize"], (bool, np.bool_)):
        raise TypeError(f"standardize must be a bool, got {options['standardize']!r}")
    seed = check_int(options["seed"], "seed", low=0)
    num_threads = options["num_threads"]
    if num_threads is not None:
        num_threads = check_int(num_threads, "num_threads", low=1)
    if not isinstance(options["progress"], (bool, np.bool_)):
        raise TypeError(f"progress must be a bool, got {options['progress']!r}")
    n = problem.n_samples
    batches_per_epoch = 1 if batch_size is None or batch_size >= n else math.ceil(n / batch_size)
    total_steps = epochs * batches_per_epoch
    warmup_steps = int(math.floor(warmup * total_steps))
    if total_steps - warmup_steps < k:
        raise ValueError(
            f"epochs={epochs} give {total_steps} optimiser step(s), {warmup_steps} of them warm-up: "
            f"too few for k={k} segments of at least one step; raise epochs"
        )
    return {
        "model": model,
        "inner": inner,
        "epochs": epochs,
        "warmup": warmup,
        "hidden": hidden,
        "lr": lr,
        "batch_size": batch_size,
        "weight_decay": weight_decay,
        "ridge": ridge,
        "standardize": bool(options["standardize"]),
        "seed": seed,
        "num_threads": num_threads,
        "progress": bool(options["progress"]),
    }


def _resolve_exact_options(options: dict[str, Any]) -> dict[str, Any]:
    """Check the options of the exact linear model; note the training options it does not use."""
    ridge = options["ridge"]
    if ridge is None:
        ridge = math.inf
    elif not (isinstance(ridge, (int, float, np.integer, np.floating)) and not isinstance(ridge, bool)
              and float(ridge) == math.inf):
        ridge = _check_float(ridge, "ridge", 0.0, None)
        if ridge == 0.0:
            raise ValueError(
                "ridge must be > 0 with inner='exact' (at ridge=0 the weights absorb the attention and the "
                "logits get no gradient); use ridge=None for the limit ridge -> inf (OMP's picks)"
            )
    if not isinstance(options["standardize"], (bool, np.bool_)):
        raise TypeError(f"standardize must be a bool, got {options['standardize']!r}")
    if not isinstance(options["progress"], (bool, np.bool_)):
        raise TypeError(f"progress must be a bool, got {options['progress']!r}")
    check_int(options["seed"], "seed", low=0)
    unused = [name for name in TRAINING_OPTIONS if options[name] is not None]
    unused += [name for name, default in (("hidden", 64), ("weight_decay", 0.0)) if options[name] != default]
    return {
        "model": "linear",
        "inner": "exact",
        "ridge": float(ridge),
        "standardize": bool(options["standardize"]),
        "unused_options": unused,
    }


def _exact_result(problem: FeatureSelection, options: dict[str, Any]) -> Result:
    """The exact linear variant (:func:`solvers.sequential_attention_exact.exact_linear_selection`) as a Result."""
    run = exact_linear_selection(problem, options["ridge"], options["standardize"])
    selected = run["selected"]
    info = {"attention": run["attention"], "correlations": run["correlations"], **options}
    return problem.result(selected, trace=run["trace"], **info)


class _AttentionTrainer:
    """One pass of Sequential Attention training on a feature-selection problem.

    Holds the data as tensors, the model parameters, the logits and the
    optimiser; :meth:`run` trains and returns the picks.
    """

    def __init__(self, problem: FeatureSelection, options: dict[str, Any]) -> None:
        self.options = options
        self.k = problem.k
        self.model = options["model"]
        self.dtype = torch.float32 if self.model == "mlp" else torch.float64
        self.generator = torch.Generator().manual_seed(options["seed"])

        X = np.array(problem.X, dtype=np.float64)
        if options["standardize"]:
            X = _standardized(X)
        self.X = torch.as_tensor(np.ascontiguousarray(X), dtype=self.dtype)
        self.n, self.d = X.shape
        self.fit_intercept = problem.fit_intercept

        if problem.loss == "squared":
            # Centring is the intercept's job; scaling only sets the units (the picks do not depend on it).
            # problem.scaling first divides by a power of two (exact), so no square overflows.
            y = problem.scaling.scaled_response(np.asarray(problem.y, dtype=np.float64))
            root_mean_square = float(np.sqrt(np.mean(y * y)))
            y = y / root_mean_square if root_mean_square > 0 else y
            self.y = torch.as_tensor(y, dtype=self.dtype)
            self.n_outputs = 1
            self.loss_fn = self._squared_loss
        else:
            classes, codes = np.unique(problem.y, return_inverse=True)
            self.y = torch.as_tensor(codes, dtype=torch.long)
            self.n_outputs = classes.size
            self.loss_fn = self._cross_entropy

        self._init_parameters(options["hidden"])
        self.logits = torch.zeros(self.d, dtype=self.dtype, requires_grad=True)
        self.selected_mask = torch.zeros(self.d, dtype=torch.bool)
        self.initial_loss = float("nan")  # training loss at the first optimiser step

        batch_size = options["batch_size"]
        self.batch_size = None if batch_size is None or batch_size >= self.n else batch_size
        self.batches_per_epoch = 1 if self.batch_size is None else math.ceil(self.n / self.batch_size)
        self.total_steps = options["epochs"] * self.batches_per_epoch
        self.warmup_steps = int(math.floor(options["warmup"] * self.total_steps))
        self.steps_per_segment = (self.total_steps - self.warmup_steps) / self.k

        model_params = [p for p in self.parameters if p is not self.bias_out or self.fit_intercept]
        self.optimizer = torch.optim.Adam(
            [
                {"params": model_params, "weight_decay": options["weight_decay"]},
                {"params": [self.logits], "weight_decay": 0.0},
            ],
            lr=options["lr"],
        )

    # ------------------------------------------------------------------ model
    def _uniform(self, shape: tuple[int, ...], bound: float) -> torch.Tensor:
        values = torch.rand(shape, generator=self.generator, dtype=self.dtype) * (2 * bound) - bound
        return values.requires_grad_(True)

    def _init_parameters(self, hidden: int) -> None:
        """Initialise weights like ``torch.nn.Linear`` (uniform ±1/√fan_in), from our generator."""
        if self.model == "mlp":
            self.W_in = self._uniform((self.d, hidden), 1 / math.sqrt(self.d))
            self.b_hidden = self._uniform((hidden,), 1 / math.sqrt(self.d))
            self.W_out = self._uniform((hidden, self.n_outputs), 1 / math.sqrt(hidden))
            self.bias_out = torch.zeros(self.n_outputs, dtype=self.dtype, requires_grad=True)
            self.parameters = [self.W_in, self.b_hidden, self.W_out, self.bias_out]
        else:
            # The convex models start at zero, the point from which the paper's
            # regularisation path (and OMP) starts.
            self.W_in = torch.zeros((self.d, self.n_outputs), dtype=self.dtype, requires_grad=True)
            self.bias_out = torch.zeros(self.n_outputs, dtype=self.dtype, requires_grad=True)
            self.parameters = [self.W_in, self.bias_out]

    def _forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        xw = x * weights
        if self.model == "mlp":
            h = torch.relu(xw @ self.W_in + self.b_hidden)
            out = h @ self.W_out
        else:
            out = xw @ self.W_in
        if self.fit_intercept:
            out = out + self.bias_out
        return out

    def _squared_loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.mean((out[:, 0] - target) ** 2)

    def _cross_entropy(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(out, target)

    # -------------------------------------------------------------- attention
    def attention_weights(self, dense: bool) -> torch.Tensor:
        """The multipliers of the features: 1 if selected (or dense), softmax over the rest otherwise."""
        if dense:
            return torch.ones(self.d, dtype=self.dtype)
        masked = self.logits.masked_fill(self.selected_mask, -math.inf)
        soft = torch.softmax(masked, dim=0)
        return torch.where(self.selected_mask, torch.ones_like(soft), soft)

    def _reset_logits(self) -> None:
        with torch.no_grad():
            self.logits.copy_(torch.randn(self.d, generator=self.generator, dtype=self.dtype) * LOGIT_INIT_STD)
        self.optimizer.state.pop(self.logits, None)

    # ------------------------------------------------------------------ train
    def _batches(self) -> list[torch.Tensor | None]:
        if self.batch_size is None:
            return [None]
        order = torch.randperm(self.n, generator=self.generator)
        return list(torch.split(order, self.batch_size))

    def run(self) -> tuple[list[int], list[dict[str, Any]], np.ndarray, float]:
        from tqdm.auto import tqdm

        ridge = self.options["ridge"]
        selected: list[int] = []
        trace: list[dict[str, Any]] = []
        attention_rows: list[np.ndarray] = []
        self._reset_logits()
        step = 0
        epoch_loss = float("nan")
        bar = tqdm(total=self.total_steps, desc="sequential attention", disable=not self.options["progress"])
        try:
            for epoch in range(self.options["epochs"]):
                loss_sum = 0.0
                for batch in self._batches():
                    dense = step < self.warmup_steps
                    x = self.X if batch is None else self.X[batch]
                    target = self.y if batch is None else self.y[batch]
                    weights = self.attention_weights(dense)
                    loss = self.loss_fn(self._forward(x, weights), target)
                    total = loss
                    if ridge > 0 and not dense:
                        rows = self.W_in[~self.selected_mask]
                        total = total + 0.5 * ridge * torch.sum(rows * rows)
                    self.optimizer.zero_grad(set_to_none=True)
                    total.backward()
                    if dense:
                        self.logits.grad = None  # the warm-up trains the model only
                    self.optimizer.step()
                    loss_sum += float(loss.detach()) * (x.shape[0] / self.n)
                    if step == 0:
                        self.initial_loss = float(loss.detach())
                    step += 1
                    bar.update(1)
                    if not dense and len(selected) < self.k and step >= self._segment_end(len(selected)):
                        pick, row = self._pick()
                        selected.append(pick)
                        attention_rows.append(row)
                        trace.append({
                            "step": len(selected) - 1,
                            "feature": pick,
                            "attention": float(row[pick]),
                            "train_loss": float(loss.detach()),
                            "epoch": epoch,
                        })
                        if len(selected) < self.k:
                            self._reset_logits()
                epoch_loss = loss_sum
        finally:
            bar.close()
        return selected, trace, np.vstack(attention_rows), epoch_loss

    def _segment_end(self, index: int) -> int:
        """The optimiser step after which pick ``index`` (0-based) is made."""
        return self.warmup_steps + int(round((index + 1) * self.steps_per_segment))

    def _pick(self) -> tuple[int, np.ndarray]:
        with torch.no_grad():
            weights = self.attention_weights(dense=False).clone()
            weights[self.selected_mask] = 0.0
            row = weights.numpy().astype(np.float64)
            pick = int(torch.argmax(weights))
            self.selected_mask[pick] = True
        return pick, row
