"""Compression plans: one factorization per prunable layer, the global budget split by packing.

Every dense ``nn.Conv2d`` (``groups == 1``) and every ``nn.Linear`` of a network is a
selection problem with a small menu of options:

* ``k x k`` convolutions (``k > 1``, or any stride/padding): Tucker-2 ranks ``(R_out, R_in)``
  of the kernel over its channel modes (:class:`~sparsesel.compress.factorized.Tucker2Conv`);
* ``1 x 1`` convolutions and linear layers: a rank ``R`` (two factors, truncated SVD);
* linear layers also: keep ``k`` blocks of the weight (:class:`~sparsesel.compress.factorized.BlockSparseLinear`,
  blocks of :func:`~sparsesel.compress.factorized.linear_block_shape`, the largest in norm);
* always: keep the layer dense.

The *cost* of an option is the number of parameters of the factorized layer (weights and
bias), or with ``cost="macs"`` its multiply-accumulates at ``image_size``. Its *error* is the
squared relative error of the truncated decomposition of the trained weight: for Tucker-2 the
HOSVD truncation error (:class:`sparsesel.tensors.tucker.HosvdErrorTable`, an upper bound on the
HOOI error that :func:`~sparsesel.compress.apply.apply` initialises with), for a rank ``R`` the
tail energy of the singular values (exact, Eckart-Young), for ``k`` blocks the energy of the
dropped blocks (exact).

The allocation is the core's :class:`~sparsesel.problems.layer_allocation.LayerAllocation` (one
option per layer, summed error minimised within the budget: a multiple-choice knapsack), solved
with :func:`sparsesel.solve`; ``method`` names the solver. ``method="packing"`` solves it exactly:
solver ``dp`` (dynamic programming over the integer parameter budget, numba) when the table has
at most :data:`DP_CELLS` cells, else ``cp_sat`` (OR-tools; MAC budgets; errors scaled to integers
with a step of ``2^-40`` of the largest possible total, so the optimum is exact up to that rounding;
a time limit); ``Plan.solver["name"]`` is the solver that produced the plan. Without calibration data the objective is the predicted
relative weight error. With calibration inputs (degraded images of the task) the knapsack is
solved for three surrogates of the output damage -- the measured output MSE of each layer's
truncation (:func:`output_distortions`), a first-order noise sensitivity times the weight error
(:func:`noise_sensitivities`), and the weight error -- and the plan whose compressed network
changes the calibration outputs least is kept (the errors of different layers do not add up
exactly, so the surrogates are checked on data; all candidates are recorded in ``Plan.solver``).
The rules ``"uniform"`` (the same fraction of every rank) and ``"energy"`` (the same fraction of
every unfolding's spectral energy), each at the largest fraction that fits, are the solvers of
those names on the levels :func:`option_levels` gives every option; ``"greedy"`` is the
convex-hull greedy. Depthwise/grouped convolutions, other layer types and the layers matched by
``exclude`` are left untouched and listed in :attr:`Plan.skipped`.

A :class:`Plan` is plain data: :meth:`Plan.to_json` / :meth:`Plan.from_json` round-trip it, and a
user may edit the ``factorization``/``ranks`` of any layer before calling ``apply``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from sparsesel.budget import Budget
from sparsesel.atomic import write_text_atomic
from sparsesel.compress.factorized import block_norms, factorized_params, linear_block_shape
from sparsesel.compress.network_io import example_input, network_output
from sparsesel.problems.layer_allocation import LayerAllocation
from sparsesel.result import Result
from sparsesel.tensors.tucker import HosvdErrorTable

__all__ = [
    "METHODS",
    "LayerAnalysis",
    "LayerPlan",
    "Plan",
    "analyze",
    "plan",
    "allocation_problem",
    "option_levels",
    "rule_options",
    "packing_solver",
]

#: ``packing`` (the exact solver that fits, see :func:`packing_solver`) or a LayerAllocation solver's name.
METHODS: tuple[str, ...] = ("packing", "uniform", "energy", "dp", "cp_sat", "greedy")
COSTS: tuple[str, ...] = ("params", "macs", "latency")
PLAN_VERSION = 1
#: Layers x (capacity + 1) up to which ``packing`` uses the dynamic program (2 bytes each), else CP-SAT.
DP_CELLS = 100_000_000


# ---------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------


@dataclass
class LayerPlan:
    """The decision for one layer.

    Attributes
    ----------
    name : str
        Module path in the network (``model.get_submodule(name)``).
    module : {"Conv2d", "Linear"}
    shape : list of int
        Weight shape ``(C_out, C_in, kh, kw)`` or ``(out, in)``.
    bias : bool
    factorization : {"dense", "tucker2", "lowrank", "blocks"}
    ranks : list of int or None
        ``[R_out, R_in]`` for ``tucker2``, ``[R]`` for ``lowrank``, ``[k, b1, b2]`` (kept blocks,
        block shape) for ``blocks`` (linear layers), ``None`` for ``dense``.
    params : int
        Parameters of the layer as planned (weights + bias).
    dense_params : int
        Parameters of the original layer.
    error : float
        Predicted squared relative weight error of the chosen option.
    max_ranks : list of int
        Largest useful ranks (``[R_out, R_in]`` or ``[R]``).
    """

    name: str
    module: str
    shape: list[int]
    bias: bool
    factorization: str
    ranks: list[int] | None
    params: int
    dense_params: int
    error: float
    max_ranks: list[int]


@dataclass
class Plan:
    """A compression plan (JSON-serialisable; see the module docstring).

    Attributes
    ----------
    method : str
        How the ranks were chosen (``packing``, ``uniform``, ``energy`` or ``edited``).
    budget : float or int
        As requested: a fraction of the model's cost, or an absolute cost.
    budget_cost : int
        The resolved cap, in the unit of ``cost`` (microseconds for ``latency``).
    cost : {"params", "macs", "latency"}
    image_size : list of int or None
        ``[H, W]`` at which MACs are counted (``cost="macs"``).
    params_before, params_after : int
        Parameters of the whole network before and after applying the plan.
    cost_before, cost_after : int
        The whole network's cost (``params`` or ``macs``) before and after.
    layers : list of LayerPlan
    skipped : list of dict
        ``{"name", "reason"}`` for the layers left untouched.
    solver : dict
        ``{"status", "objective", "wall_time", ...}`` of the allocation.
    structured : list of dict
        Channel groups kept narrower (``cost="latency"`` plans): ``{"module", "kind", "channels", "of"}``
        (:mod:`sparsesel.compress.channel_pruning` kinds; applied by
        :func:`sparsesel.compress.latency_plan.apply_latency_plan` before the factorizations).
    latency : dict
        How a latency plan was measured and what it predicts (``predicted_ms``, ``dense_ms``, sizes, threads).
    """

    method: str
    budget: float | int
    budget_cost: int
    cost: str
    image_size: list[int] | None
    params_before: int
    params_after: int
    cost_before: int
    cost_after: int
    layers: list[LayerPlan]
    skipped: list[dict] = field(default_factory=list)
    solver: dict = field(default_factory=dict)
    version: int = PLAN_VERSION
    structured: list = field(default_factory=list)
    latency: dict = field(default_factory=dict)

    # -- serialisation ---------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Plan":
        """Rebuild a plan from :meth:`to_dict` output, checking every field."""
        if not isinstance(data, dict):
            raise TypeError(f"a plan must be a dict, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(n for n in names - set(data) if n not in ("skipped", "solver", "version", "structured", "latency"))
        unknown = sorted(set(data) - names)
        if missing or unknown:
            raise ValueError(f"plan fields: missing {missing}, unknown {unknown}")
        if data.get("version", PLAN_VERSION) != PLAN_VERSION:
            raise ValueError(f"plan version {data.get('version')!r} is not supported (this code reads {PLAN_VERSION})")
        if not isinstance(data["layers"], list):
            raise TypeError(f"plan layers must be a list of layer dicts, got {type(data['layers']).__name__}")
        layer_names = {f.name for f in dataclasses.fields(LayerPlan)}
        layers = []
        for i, layer in enumerate(data["layers"]):
            if not isinstance(layer, dict) or set(layer) != layer_names:
                raise ValueError(f"plan layers[{i}] must have exactly the fields {sorted(layer_names)}")
            layers.append(LayerPlan(**layer))
        return cls(**{**data, "layers": layers})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "Plan":
        return cls.from_dict(json.loads(text))

    def save(self, path: str | os.PathLike, *, force: bool = False) -> Path:
        """Write the plan as JSON atomically."""
        return write_text_atomic(path, self.to_json(), force=force)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Plan":
        """Read a plan written by :meth:`save` (or edited by hand)."""
        text = Path(path).read_text()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"plan file {path} is not valid JSON ({exc})") from None
        return cls.from_dict(data)

    # -- views -----------------------------------------------------------
    def layer(self, name: str) -> LayerPlan:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no layer {name!r} in the plan")

    def ranks(self) -> dict[str, list[int] | None]:
        """``{layer name: ranks}`` (``None`` for dense layers)."""
        return {layer.name: layer.ranks for layer in self.layers}

    def summary(self) -> str:
        """A short human-readable table of the plan."""
        lines = [f"plan ({self.method}, cost={self.cost}): params {self.params_before} -> {self.params_after} "
                 f"({self.params_after / max(self.params_before, 1):.3f}); cost {self.cost_before} -> {self.cost_after} "
                 f"(budget {self.budget_cost})"]
        for entry in self.structured:
            lines.append(f"  {(entry['module'] or '<net>') + ':' + entry['kind']:40s} channels {entry['of']} -> {entry['channels']}")
        for layer in self.layers:
            ranks = "dense" if layer.ranks is None else f"{layer.factorization} {layer.ranks}"
            lines.append(f"  {layer.name:40s} {str(layer.shape):22s} {ranks:22s} {layer.dense_params:>8d} -> {layer.params:>8d}  err {layer.error:.4f}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------
# per-layer analysis: options, their costs and errors
# ---------------------------------------------------------------------------


@dataclass(eq=False)
class LayerAnalysis:
    """The option menu of one layer.

    ``options`` is a list of ``(factorization, ranks)``; ``params``, ``macs`` and ``errors`` are
    arrays aligned with it. Option 0 is always ``("dense", None)`` with error 0.
    ``spectra`` holds the singular values of the unfoldings (mode 0 = output channels,
    mode 1 = input channels; one entry for ``lowrank`` layers).
    """

    name: str
    module: str
    shape: tuple[int, ...]
    bias: bool
    kind: str  # "tucker2" or "lowrank"
    max_ranks: tuple[int, ...]
    options: list[tuple[str, tuple[int, ...] | None]]
    params: np.ndarray
    errors: np.ndarray
    spectra: list[np.ndarray]
    macs: np.ndarray | None = None
    table: Any = None
    objective: np.ndarray | None = None  # per option: predicted output MSE (with calibration data)
    sensitivity: float | None = None  # output MSE per unit of relative squared weight error (noise probe)
    block_energy: np.ndarray | None = None  # linear layers: squared block norms, largest first

    def objective_of(self, factorization: str, ranks) -> float:
        """The packing objective of an option: predicted output MSE if measured, else weight error."""
        error = self.error_of(factorization, ranks)
        if self.objective is None:
            return error
        order = np.argsort(self.errors)
        return float(np.interp(error, self.errors[order], self.objective[order]))

    def option_objectives(self) -> np.ndarray:
        return self.errors if self.objective is None else self.objective

    @property
    def dense_params(self) -> int:
        return int(self.params[0])

    def error_of(self, factorization: str, ranks) -> float:
        """Predicted squared relative error of any option (not only the menu's)."""
        if factorization == "dense":
            return 0.0
        if factorization == "tucker2":
            r_out, r_in = (int(r) for r in ranks)
            r_out, r_in = min(r_out, self.max_ranks[0]), min(r_in, self.max_ranks[1])
            return float(self.table.relative_error((r_out, r_in, self.table.max_ranks[2])))
        if factorization == "blocks":
            kept = int(ranks[0])
            total = float(self.block_energy.sum())
            return float(self.block_energy[kept:].sum() / total) if total > 0 else 0.0
        (r,) = (int(r) for r in ranks)
        energy = self.spectra[0] ** 2
        total = float(energy.sum())
        return float(energy[r:].sum() / total) if total > 0 else 0.0

    def macs_of(self, factorization: str, ranks) -> int:
        if self.macs is None:
            return 0
        return int(_macs(self, factorization, ranks))


def _layer_shape(module: nn.Module) -> tuple[int, ...]:
    return tuple(int(s) for s in module.weight.shape)


def _is_prunable(module: nn.Module) -> str | None:
    """``None`` if ``module`` can be planned, else the reason it is skipped."""
    if isinstance(module, nn.Conv2d):
        if module.groups != 1:
            return f"grouped/depthwise convolution (groups={module.groups})"
        return None
    if isinstance(module, nn.Linear):
        return None
    return "not a Conv2d or Linear"


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(name == p or fnmatch.fnmatchcase(name, p) for p in patterns)


def _pixel_counts(model: nn.Module, names: list[str], image_size: Sequence[int]) -> dict[str, tuple[int, int]]:
    """``{name: (input positions, output positions)}`` summed over the calls of one forward pass
    of a ``(1, 3, H, W)`` input (positions = pixels for convolutions, rows for linear layers)."""
    counts = {name: [0, 0] for name in names}
    handles = []

    def hook(name):
        def record(module, inputs, output):
            x = inputs[0]
            if isinstance(module, nn.Conv2d):
                counts[name][0] += int(x.shape[0] * x.shape[-2] * x.shape[-1])
                counts[name][1] += int(output.shape[0] * output.shape[-2] * output.shape[-1])
            else:
                rows = int(np.prod(x.shape[:-1]))
                counts[name][0] += rows
                counts[name][1] += rows
        return record

    for name in names:
        handles.append(model.get_submodule(name).register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            network_output(model, example_input(model, int(image_size[0]), int(image_size[1])))
    finally:
        for handle in handles:
            handle.remove()
    silent = [name for name, (a, b) in counts.items() if a == 0]
    if silent:
        raise ValueError(
            f"cost='macs' needs every planned layer to run as a module in forward(); these do not "
            f"(their weights are read directly): {silent[:8]}{' ...' if len(silent) > 8 else ''}; "
            "exclude them or use cost='params'"
        )
    return {name: (a, b) for name, (a, b) in counts.items()}


def _macs(analysis: LayerAnalysis, factorization: str, ranks) -> float:
    p_in, p_out = analysis.pixels
    shape = analysis.shape
    out, inp = shape[0], shape[1]
    area = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    if factorization == "dense":
        return out * inp * area * p_out
    if factorization == "tucker2":
        r_out, r_in = ranks
        return inp * r_in * p_in + r_in * r_out * area * p_out + r_out * out * p_out
    if factorization == "blocks":
        kept, b1, b2 = ranks
        return kept * b1 * b2 * p_out
    (r,) = ranks
    return (inp * r + r * out) * p_out


def _spectrum(matrix: np.ndarray) -> np.ndarray:
    return np.linalg.svd(matrix, compute_uv=False)


def _analyze_layer(name: str, module: nn.Module) -> LayerAnalysis:
    weight = module.weight.detach().cpu().double().numpy()
    shape = _layer_shape(module)
    bias = module.bias is not None
    out, inp = shape[0], shape[1]
    dense = factorized_params(shape, "dense", None, bias)
    conv_1x1 = isinstance(module, nn.Conv2d) and tuple(module.kernel_size) == (1, 1) and tuple(module.padding) == (0, 0)
    if isinstance(module, nn.Linear) or conv_1x1:
        matrix = weight.reshape(out, inp)
        spectrum = _spectrum(matrix)
        max_rank = len(spectrum)
        energy = spectrum**2
        total = float(energy.sum())
        tail = np.concatenate([np.cumsum(energy[::-1])[::-1], [0.0]])  # tail[r] = sum_{i >= r}
        options: list[tuple[str, tuple[int, ...] | None]] = [("dense", None)]
        params, errors = [dense], [0.0]
        for r in range(1, max_rank + 1):
            cost = factorized_params(shape, "lowrank", [r], bias)
            if cost < dense:
                options.append(("lowrank", (r,)))
                params.append(cost)
                errors.append(float(tail[r] / total) if total > 0 else 0.0)
        block_energy = None
        if isinstance(module, nn.Linear):
            block = linear_block_shape(out, inp)
            block_energy = np.sort(block_norms(matrix, block))[::-1]
            block_tail = np.concatenate([np.cumsum(block_energy[::-1])[::-1], [0.0]])
            for kept in range(1, len(block_energy)):
                cost = factorized_params(shape, "blocks", [kept, *block], bias)
                if cost < dense:
                    options.append(("blocks", (kept, *block)))
                    params.append(cost)
                    errors.append(float(block_tail[kept] / total) if total > 0 else 0.0)
        return LayerAnalysis(name, type(module).__name__, shape, bias, "lowrank", (max_rank,), options,
                             np.asarray(params, dtype=np.int64), np.asarray(errors), [spectrum], block_energy=block_energy)
    area = int(np.prod(shape[2:]))
    tensor = weight.reshape(out, inp, area)
    max_out, max_in = min(out, inp * area), min(inp, out * area)
    table = HosvdErrorTable(tensor, (max_out, max_in, area))
    max_out, max_in = table.max_ranks[0], table.max_ranks[1]
    # ranks beyond R_out * area (or R_in * area) add parameters and no accuracy: left off the menu
    grid = np.array([(ro, ri, table.max_ranks[2]) for ro in range(1, max_out + 1) for ri in range(1, max_in + 1)
                     if ri <= ro * area and ro <= ri * area], dtype=np.int64)
    costs = in_params = inp * grid[:, 1] + grid[:, 1] * grid[:, 0] * area + grid[:, 0] * out + (out if bias else 0)
    keep = costs < dense
    grid, costs = grid[keep], in_params[keep]
    errs = table.relative_errors(grid) if len(grid) else np.zeros(0)
    options = [("dense", None)] + [("tucker2", (int(ro), int(ri))) for ro, ri, _ in grid]
    spectra = [_spectrum(tensor.reshape(out, -1)), _spectrum(np.moveaxis(tensor, 1, 0).reshape(inp, -1))]
    return LayerAnalysis(name, type(module).__name__, shape, bias, "tucker2", (int(max_out), int(max_in)), options,
                         np.concatenate([[dense], costs]).astype(np.int64), np.concatenate([[0.0], errs]), spectra, table=table)


def output_distortions(model: nn.Module, layers: list["LayerAnalysis"], calibration: torch.Tensor) -> None:
    """Attach to each layer the predicted output damage of every option (``layer.objective``).

    For each layer the mean squared change of the network's output on ``calibration`` is measured
    with the layer truncated (as :func:`~sparsesel.compress.apply.apply` would initialise it) at
    two options: its cheapest one and the one closest to half its dense cost. The damage of any
    option is interpolated piecewise-linearly in its predicted weight error through ``(0, 0)`` and
    the measured points (the slope of the last segment beyond them). One forward pass per
    measured option; the network is not modified (a copy is edited).

    Parameters
    ----------
    model : torch.nn.Module
    layers : list of LayerAnalysis
    calibration : torch.Tensor, shape (B, C, H, W)
        Inputs (e.g. degraded patches of the task), as :func:`~sparsesel.compress.network_io.network_input` makes them.
    """
    import copy

    from sparsesel.compress.apply import set_submodule
    from sparsesel.compress.factorized import factorize

    work = copy.deepcopy(model).eval()
    with torch.no_grad():
        reference = network_output(work, calibration)
        for layer in layers:
            if len(layer.options) < 2:
                layer.objective = np.zeros(1)
                continue
            original = work.get_submodule(layer.name)
            cheapest = int(np.argmin(layer.params))
            middle = int(np.argmin(np.abs(layer.params[1:] - 0.5 * layer.dense_params))) + 1
            points = {0.0: 0.0}
            for j in sorted({cheapest, middle}):
                factorization, ranks = layer.options[j]
                set_submodule(work, layer.name, factorize(original, factorization, ranks))
                points[float(layer.errors[j])] = float(((network_output(work, calibration) - reference) ** 2).mean())
            set_submodule(work, layer.name, original)
            xs = np.array(sorted(points))
            ys = np.maximum.accumulate(np.array([points[x] for x in xs]))  # damage never decreases with error
            values = np.interp(layer.errors, xs, ys)
            if len(xs) > 1 and xs[-1] > xs[-2]:
                slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
                beyond = layer.errors > xs[-1]
                values[beyond] = ys[-1] + slope * (layer.errors[beyond] - xs[-1])
            layer.objective = values


def noise_probes(model: nn.Module, layers: list["LayerAnalysis"], *, epsilon: float = 0.05, seed: int = 0) -> list[torch.Tensor]:
    """The random weight perturbations of :func:`noise_sensitivities`, one per layer (relative size ``epsilon``),
    drawn in layer order from one generator seeded with ``seed``."""
    generator = torch.Generator().manual_seed(int(seed))
    probes = []
    for layer in layers:
        weight = model.get_submodule(layer.name).weight.detach()
        noise = torch.randn(weight.shape, generator=generator, dtype=weight.dtype)
        probes.append(noise * (epsilon * weight.norm() / noise.norm().clamp_min(1e-30)))
    return probes


def noise_sensitivities(model: nn.Module, layers: list["LayerAnalysis"], calibration: torch.Tensor, *,
                        epsilon: float = 0.05, seed: int = 0, probes: list[torch.Tensor] | None = None) -> None:
    """Attach ``layer.sensitivity``: output MSE per unit of squared relative weight error, from one
    random perturbation of relative size ``epsilon`` of each layer's weight (first-order model).

    ``probes``: the perturbations to use (default :func:`noise_probes` ``(model, layers, epsilon, seed)``).
    """
    import copy

    work = copy.deepcopy(model).eval()
    probes = noise_probes(work, layers, epsilon=epsilon, seed=seed) if probes is None else probes
    if len(probes) != len(layers):
        raise ValueError(f"{len(probes)} noise probes for {len(layers)} layers")
    with torch.no_grad():
        reference = network_output(work, calibration)
        for layer, noise in zip(layers, probes):
            weight = work.get_submodule(layer.name).weight
            original = weight.detach().clone()
            weight.copy_(original + noise)
            layer.sensitivity = float(((network_output(work, calibration) - reference) ** 2).mean()) / epsilon**2
            weight.copy_(original)


def _calibrate_in_worker(model: nn.Module, layers: list["LayerAnalysis"], calibration: torch.Tensor,
                         probes: list[torch.Tensor], threads: int) -> list[tuple[np.ndarray | None, float | None]]:
    """:func:`calibrate_layers` for a share of the layers, in a worker process with ``threads`` torch threads."""
    torch.set_num_threads(threads)
    with threadpool_limits(1):
        output_distortions(model, layers, calibration)
        noise_sensitivities(model, layers, calibration, probes=probes)
    return [(layer.objective, layer.sensitivity) for layer in layers]


def calibrate_layers(model: nn.Module, layers: list["LayerAnalysis"], calibration: torch.Tensor, *,
                     processes: int = 1) -> None:
    """Attach each layer's ``objective`` (:func:`output_distortions`) and ``sensitivity`` (:func:`noise_sensitivities`).

    Both take one to three forward passes of the whole network per layer, each independent of the
    others, and a pass on a small calibration batch gains little from a second torch thread; with
    ``processes > 1`` the layers are dealt round-robin to that many worker processes (``spawn``, each
    with ``torch.get_num_threads() // processes`` threads). Every layer gets the same perturbations and
    the same passes as with ``processes=1``. A script that calls this with ``processes > 1`` needs the
    usual ``if __name__ == "__main__":`` guard.
    """
    from sparsesel.workers import run_in_workers

    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise ValueError(f"processes must be a positive int, got {processes!r}")
    probes = noise_probes(model, layers)
    if processes == 1 or len(layers) < 2:
        output_distortions(model, layers, calibration)
        noise_sensitivities(model, layers, calibration, probes=probes)
        return
    shares = [list(range(start, len(layers), processes)) for start in range(processes)]
    threads = max(1, torch.get_num_threads() // processes)
    outcomes = run_in_workers(_calibrate_in_worker, [(model, [layers[i] for i in share], calibration, [probes[i] for i in share], threads)
                                                     for share in shares if share], processes)
    for share, values in zip([s for s in shares if s], outcomes):
        for i, (objective, sensitivity) in zip(share, values):
            layers[i].objective, layers[i].sensitivity = objective, sensitivity


def calibration_mse(model: nn.Module, layers: list["LayerAnalysis"], options, calibration: torch.Tensor) -> float:
    """Mean squared output change on ``calibration`` when ``layers`` take ``options`` (a copy is edited)."""
    import copy

    from sparsesel.compress.apply import set_submodule
    from sparsesel.compress.factorized import factorize

    work = copy.deepcopy(model).eval()
    with torch.no_grad(), threadpool_limits(1):
        reference = network_output(work, calibration)
        for layer, (factorization, ranks) in zip(layers, options):
            if factorization != "dense":
                set_submodule(work, layer.name, factorize(work.get_submodule(layer.name), factorization, ranks))
        return float(((network_output(work, calibration) - reference) ** 2).mean())


def analyze(
    model: nn.Module,
    *,
    exclude: Sequence[str] = (),
    cost: str = "params",
    image_size: Sequence[int] | None = None,
    calibration: torch.Tensor | None = None,
    budget: float | int | Budget | None = None,
    processes: int = 1,
) -> tuple[list[LayerAnalysis], list[dict]]:
    """Option menus of every prunable layer of ``model`` (not modified).

    Parameters
    ----------
    model : torch.nn.Module
    exclude : sequence of str
        Module names or shell patterns (``fnmatch``) of layers to leave untouched.
    cost : {"params", "macs"}
    image_size : (H, W), required for ``cost="macs"``
    calibration : torch.Tensor, shape (B, 3, H, W), optional
        Inputs for :func:`output_distortions`: each option's objective is then its predicted
        output MSE. Without it, an option's objective is its predicted relative weight error.
    budget : float, int or Budget, optional
        The budget the analysis is for (as :func:`plan` takes it): checked as soon as the layers'
        options are known, before the calibration passes (minutes on large networks), so that a
        budget no plan can meet fails at once (``ValueError`` with the smallest achievable cost).
    processes : int
        Worker processes for the calibration passes (:func:`calibrate_layers`); 1: in this process.

    Returns
    -------
    layers : list of LayerAnalysis
    skipped : list of dict
        ``{"name", "reason"}`` for every Conv2d/Linear/other weight layer left untouched.
    """
    if cost not in ("params", "macs"):
        raise ValueError(f"analyze() counts cost 'params' or 'macs', got {cost!r}"
                         + ("; latency is measured by sparsesel.compress.latency_plan.analyze_latency" if cost == "latency" else ""))
    with threadpool_limits(1):  # small SVDs: BLAS threads only contend
        return _analyze(model, exclude=exclude, cost=cost, image_size=image_size, calibration=calibration,
                        budget=budget, processes=processes)


def _analyze(model, *, exclude, cost, image_size, calibration, budget, processes):
    if isinstance(exclude, str):
        exclude = (exclude,)
    layers, skipped = [], []
    for name, module in model.named_modules():
        if not name or not isinstance(getattr(module, "weight", None), torch.Tensor):
            continue
        if isinstance(module, (nn.Conv2d, nn.Linear)) and _matches(name, exclude):
            skipped.append({"name": name, "reason": "excluded by the user"})
            continue
        reason = _is_prunable(module)
        if reason is not None:
            if isinstance(module, nn.modules.conv._ConvNd) or isinstance(module, nn.Linear) or module.weight.dim() >= 2:
                skipped.append({"name": name, "reason": reason})
            continue
        layers.append(_analyze_layer(name, module))
    unused = [p for p in exclude if not any(_matches(n, [p]) for n, _ in model.named_modules())]
    if unused:
        raise ValueError(f"exclude pattern(s) {unused} match no module of the network")
    if cost == "macs":
        if image_size is None or len(image_size) != 2:
            raise ValueError("cost='macs' needs image_size=(H, W)")
        pixels = _pixel_counts(model, [layer.name for layer in layers], image_size)
        for layer in layers:
            layer.pixels = pixels[layer.name]
            layer.macs = np.asarray([_macs(layer, f, r) for f, r in layer.options], dtype=np.int64)
    if budget is not None:
        _check_budget(Budget.coerce(budget, cost), layers, cost,
                      _model_params(model) if cost == "params" else model_macs(model, image_size))
    if calibration is not None:
        calibrate_layers(model, layers, calibration, processes=processes)
    return layers, skipped


# ---------------------------------------------------------------------------
# the allocation problem
# ---------------------------------------------------------------------------


#: Slack of the rank rules: rank ``r`` of ``r_max`` reaches the fraction ``t`` when ``r >= t·r_max − 1e-9``,
#: a kept energy ``k`` reaches ``t`` when ``k >= t − 1e-12`` (float noise in ``t·r_max`` and in cumulative sums).
RANK_SLACK, ENERGY_SLACK = 1e-9, 1e-12


def rule_options(layer: LayerAnalysis) -> list[tuple[str, tuple[int, ...] | None]]:
    """The menu plus the Tucker-2 rank pairs it leaves off (``R_in > R_out·area`` or the reverse) that
    cost less than the dense layer: the rank rules ``uniform`` and ``energy`` may take them (the exact
    solvers never would: they add parameters and no accuracy)."""
    options = list(layer.options)
    if layer.kind != "tucker2":
        return options
    area = int(np.prod(layer.shape[2:]))
    listed = set(options)
    for r_out in range(1, layer.max_ranks[0] + 1):
        for r_in in range(1, layer.max_ranks[1] + 1):
            option = ("tucker2", (r_out, r_in))
            if option not in listed and factorized_params(layer.shape, "tucker2", option[1], layer.bias) < layer.dense_params:
                options.append(option)
    return options


def option_levels(layer: LayerAnalysis, options: Sequence[tuple[str, Any]] | None = None) -> dict[str, np.ndarray]:
    """The per-option levels the rule solvers read (see :class:`~sparsesel.problems.layer_allocation.LayerAllocation`).

    ``rank_fraction``: the smallest ``(r + 1e-9) / r_max`` over the option's ranks (so the rule
    ``uniform`` at threshold ``t`` takes the ranks ``max(1, ⌈t·r_max − 1e-9⌉)``); ``kept_energy``:
    the smallest kept fraction of spectral energy (``+ 1e-12``) over its unfoldings (so ``energy``
    takes, per unfolding, the fewest ranks keeping ``t − 1e-12``; a mode without energy counts as
    fully kept). Both are capped at 1. The dense option has level 1 on both scales, block-sparse
    options NaN (they are not on these scales). The slacks (:data:`RANK_SLACK`, :data:`ENERGY_SLACK`)
    keep the plans of the rank rules these solvers replaced. ``options``: default ``layer.options``.
    """
    options = layer.options if options is None else options
    kept_fraction = []
    for spectrum, m in zip(layer.spectra, layer.max_ranks):
        energy = np.asarray(spectrum[:m], dtype=np.float64) ** 2
        total = float(energy.sum())
        kept_fraction.append(np.cumsum(energy) / total if total > 0 else np.ones(len(energy)))
    rank_fraction, kept_energy = np.full(len(options), np.nan), np.full(len(options), np.nan)
    for j, (factorization, ranks) in enumerate(options):
        if factorization == "dense":
            rank_fraction[j] = kept_energy[j] = 1.0
        elif factorization == layer.kind:
            rank_fraction[j] = min(1.0, min((int(r) + RANK_SLACK) / m for r, m in zip(ranks, layer.max_ranks)))
            kept_energy[j] = min(1.0, min(float(k[int(r) - 1]) + ENERGY_SLACK for r, k in zip(ranks, kept_fraction)))
    return {"rank_fraction": rank_fraction, "kept_energy": kept_energy}


def allocation_problem(layers: list[LayerAnalysis], capacity: int, cost: str,
                       errors: Sequence[np.ndarray] | None = None,
                       menus: Sequence[Sequence[tuple[str, Any]]] | None = None) -> LayerAllocation:
    """The :class:`~sparsesel.problems.layer_allocation.LayerAllocation` of ``layers`` within ``capacity``.

    Parameters
    ----------
    layers : list of LayerAnalysis
    capacity : int
        What the planned layers may cost together, in the unit of ``cost``.
    cost : {"params", "macs"}
    errors : list of ndarray, optional
        The error of every option per layer (default: :meth:`LayerAnalysis.option_objectives`).
    menus : list of option lists, optional
        Other menus than ``layer.options`` (e.g. :func:`rule_options`); their costs and errors
        (:meth:`LayerAnalysis.objective_of`) are computed here. ``selected[l]`` indexes ``menus[l]``.
    """
    if menus is None:
        costs = [layer.params if cost == "params" else layer.macs for layer in layers]
        errors = [layer.option_objectives() for layer in layers] if errors is None else errors
    else:
        costs = [[_layer_cost(layer, option, cost) for option in menu] for layer, menu in zip(layers, menus)]
        errors = [menu_objectives(layer, menu) for layer, menu in zip(layers, menus)]
    levels = [option_levels(layer, None if menus is None else menu) for layer, menu in zip(layers, menus or layers)]
    return LayerAllocation(costs, errors, capacity, names=[layer.name for layer in layers], units=[cost],
                           levels={key: [lv[key] for lv in levels] for key in ("rank_fraction", "kept_energy")})


def menu_objectives(layer: LayerAnalysis, menu: Sequence[tuple[str, Any]]) -> np.ndarray:
    """:meth:`LayerAnalysis.objective_of` of every option of ``menu`` (the analysed menu's values where listed)."""
    known = dict(zip(layer.options, layer.option_objectives()))
    return np.array([known[o] if o in known else layer.objective_of(*o) for o in menu], dtype=np.float64)


def packing_solver(problem: LayerAllocation) -> str:
    """The exact solver ``method="packing"`` uses: ``dp`` up to :data:`DP_CELLS` back-pointers, else ``cp_sat``."""
    return "dp" if problem.n_layers * (int(problem.capacity[0]) + 1) <= DP_CELLS else "cp_sat"


def _solver_record(result: Result) -> dict[str, Any]:
    """What :attr:`Plan.solver` keeps of an allocation's result (JSON-ready, ``cost`` in the plan's unit)."""
    record = {"name": result.solver, "status": result.status, "objective": result.objective,
              "lower_bound": result.lower_bound, "upper_bound": result.upper_bound, "wall_time": result.wall_time}
    for key, value in result.info.items():
        if key == "cost":
            value = next(iter(value.values()))
        if key != "capacity":
            record[key] = value
    return record


def _allocate(model: nn.Module, layers: list[LayerAnalysis], capacity: int, cost: str, method: str, *,
              calibration: torch.Tensor | None, time_limit: float, seed: int) -> tuple[list, dict[str, Any]]:
    """Solve the allocation: ``(option of every layer, Plan.solver record)``.

    ``packing`` (or a named exact solver) solves one problem per error surrogate (with
    calibration data: measured output MSE, noise sensitivity x weight error, weight error) and
    keeps the choice whose compressed network changes the calibration outputs least; a rule
    (``uniform``, ``energy``) or ``greedy`` solves the problem of :meth:`LayerAnalysis.option_objectives`.
    """
    import sparsesel

    if method not in ("packing", "dp", "cp_sat"):
        menus = [rule_options(layer) for layer in layers] if method in ("uniform", "energy") else [layer.options for layer in layers]
        problem = allocation_problem(layers, capacity, cost, menus=menus)
        result = sparsesel.solve(problem, method)
        if result.status == "infeasible":
            raise ValueError(f"the budget is too small for the {method} rule: {result.info.get('message')}")
        return [menu[j] for menu, j in zip(menus, result.selected)], _solver_record(result)
    surrogates = []
    if all(layer.objective is not None for layer in layers):
        surrogates.append(("measured output MSE", [layer.objective for layer in layers]))
    if all(layer.sensitivity is not None for layer in layers):
        surrogates.append(("noise sensitivity x weight error", [layer.sensitivity * layer.errors for layer in layers]))
    surrogates.append(("relative weight error", [layer.errors for layer in layers]))
    if calibration is None:
        surrogates = surrogates[:1]
    candidates = []
    for label, objectives in surrogates:
        problem = allocation_problem(layers, capacity, cost, objectives)
        solver = packing_solver(problem) if method == "packing" else method
        options = {"time_limit": time_limit, "seed": seed} if solver == "cp_sat" else {}
        result = sparsesel.solve(problem, solver, **options)
        chosen = [layer.options[j] for layer, j in zip(layers, result.selected)]
        mse = calibration_mse(model, layers, chosen, calibration) if len(surrogates) > 1 else None
        candidates.append(({"surrogate": label, "calibration_mse": mse, **_solver_record(result)}, chosen))
    best, options = min(candidates, key=lambda c: c[0]["calibration_mse"] if c[0]["calibration_mse"] is not None else 0.0)
    return options, {**best, "candidates": [record for record, _ in candidates]}


# ---------------------------------------------------------------------------
# plan()
# ---------------------------------------------------------------------------


def _model_params(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def model_macs(model: nn.Module, image_size: Sequence[int]) -> int:
    """Multiply-accumulates of one forward pass of a ``(1, C, H, W)`` input (torch's FLOP counter / 2).

    The pass runs on a copy of the network on the ``meta`` device (shapes only, no arithmetic: the
    count is the same, ~2.5× faster for UHDformer at 512²); a network whose forward needs real
    values (data-dependent shapes) is counted on real tensors instead.
    """
    import copy

    from torch.utils.flop_counter import FlopCounterMode

    x = example_input(model, int(image_size[0]), int(image_size[1]))

    def count(network: nn.Module, inputs: torch.Tensor) -> int:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            network_output(network, inputs)
        return int(counter.get_total_flops() // 2)

    try:
        return count(copy.deepcopy(model).to("meta"), x.to("meta"))
    except (RuntimeError, NotImplementedError, TypeError, ValueError):
        return count(model, x)


def _layer_cost(layer: LayerAnalysis, option, cost: str) -> int:
    factorization, ranks = option
    if cost == "macs":
        return layer.macs_of(factorization, ranks)
    return factorized_params(layer.shape, factorization, ranks, layer.bias)


def _check_budget(budget: Budget, layers: list[LayerAnalysis], cost: str, cost_before: int) -> tuple[int, int]:
    """``(cap, fixed)``: the budget in units of ``cost`` and the cost outside the planned layers.

    Raises ``ValueError`` (with the smallest achievable cost) when no choice of the layers' options fits.
    """
    dense_total = sum(_layer_cost(layer, ("dense", None), cost) for layer in layers)
    fixed = cost_before - dense_total
    cap = budget.resolve(cost_before)
    minimum = fixed + sum(int(min(_layer_cost(layer, o, cost) for o in layer.options)) for layer in layers)
    if minimum > cap:
        hint = "" if budget.is_fraction else f"; {budget.text} is a count of {cost}: write a fraction with a decimal point (1.0: the whole network)"
        raise ValueError(
            f"budget {budget.text} ({cap} {cost}) is too small: the smallest plan costs {minimum} {cost} "
            f"({minimum / cost_before:.4f} of {cost_before}; {fixed} of them outside the planned layers){hint}"
        )
    return cap, fixed


def plan(
    model: nn.Module,
    budget: float | int | Budget,
    *,
    method: str = "packing",
    cost: str | None = None,
    image_size: Sequence[int] | None = None,
    exclude: Sequence[str] = (),
    time_limit: float = 60.0,
    seed: int = 0,
    calibration: torch.Tensor | None = None,
    analysis: tuple[list[LayerAnalysis], list[dict]] | Any | None = None,
    threads: int = 1,
) -> Plan:
    """Plan the compression of ``model`` (not modified) under a global budget.

    Parameters
    ----------
    model : torch.nn.Module
        A trained network.
    budget : float, int or Budget
        A fraction in ``(0, 1]`` of the whole network's cost (parameters, or MACs at
        ``image_size``; a float, rounded down exactly), or an absolute cost (an int; ``1`` is one
        unit, ``1.0`` the whole network): :class:`sparsesel.budget.Budget`. The planned network's
        total cost never exceeds it; parameters outside the planned layers count in full.
    method : {"packing", "uniform", "energy", "dp", "cp_sat", "greedy"}
        ``packing``: the exact multiple-choice knapsack minimising the summed predicted errors,
        solved by ``dp`` (dynamic programming) or, for large capacities, ``cp_sat``
        (:func:`packing_solver`); any other name is that solver of
        :class:`~sparsesel.problems.layer_allocation.LayerAllocation`: ``uniform`` (the same
        rank fraction in every layer), ``energy`` (the same kept spectral-energy fraction in
        every unfolding), each at the largest fraction that fits, ``greedy`` (convex-hull
        greedy), or an exact solver forced. ``Plan.solver["name"]`` names the solver used.
    cost : {"params", "macs", "latency"}, optional
        The unit of the budget; default: the unit of a :class:`~sparsesel.budget.Budget`, else ``"params"``.
        ``latency``: the budget is a fraction of the network's *measured* latency at ``image_size``
        with ``threads`` (or milliseconds); channel groups (trunk widths, hidden widths, heads,
        matching candidates) and the factorizations that save time are the options, each timed in
        place (:mod:`sparsesel.compress.latency_plan`; UHDformer; ``method="packing"``). Apply the
        plan with :func:`sparsesel.compress.latency_plan.apply_latency_plan`.
    image_size : (H, W), optional
        Needed for ``cost="macs"`` and ``cost="latency"``.
    exclude : sequence of str
        Names or ``fnmatch`` patterns of layers to leave untouched.
    time_limit : float
        Seconds for CP-SAT (used only where the dynamic program would be too large).
    seed : int
        CP-SAT's random seed.
    calibration : torch.Tensor, shape (B, 3, H, W), optional
        Inputs to predict each option's output damage (see :func:`analyze`).
    analysis : optional
        The output of :func:`analyze` for this model (reused across budgets); for ``cost="latency"``
        a :class:`~sparsesel.compress.latency_plan.LatencyAnalysis`.
    threads : int
        Torch threads the latency is measured with (``cost="latency"``).

    Returns
    -------
    Plan

    Raises
    ------
    ValueError
        Unknown method or cost; a budget that no plan can meet (the message gives the
        smallest achievable cost).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS} (or 'magnitude' via sparsesel.compress.baselines)")
    if cost is None:
        cost = budget.unit if isinstance(budget, Budget) else "params"
    if cost not in COSTS:
        raise ValueError(f"cost must be one of {COSTS}, got {cost!r}")
    if cost == "latency":
        from sparsesel.compress.latency_plan import plan_latency

        if method != "packing":
            raise ValueError(f"cost='latency' plans with method='packing' only, got {method!r}")
        if image_size is None:
            raise ValueError("cost='latency' needs image_size=(H, W)")
        return plan_latency(model, Budget.coerce(budget, cost), image_size=image_size, threads=threads, calibration=calibration,
                            analysis=analysis, exclude=exclude)
    budget = Budget.coerce(budget, cost)
    began = time.perf_counter()
    layers, skipped = analysis if analysis is not None else analyze(
        model, exclude=exclude, cost=cost, image_size=image_size, calibration=calibration)
    if cost == "macs" and any(layer.macs is None for layer in layers):
        raise ValueError("the analysis was made without MACs; call analyze(..., cost='macs', image_size=...)")
    params_before = _model_params(model)
    cost_before = params_before if cost == "params" else model_macs(model, image_size)
    cap, fixed = _check_budget(budget, layers, cost, cost_before)
    capacity = cap - fixed
    options, solver = _allocate(model, layers, capacity, cost, method, calibration=calibration,
                                time_limit=time_limit, seed=seed)
    planned = []
    for layer, (factorization, ranks) in zip(layers, options):
        planned.append(LayerPlan(
            name=layer.name, module=layer.module, shape=list(layer.shape), bias=layer.bias,
            factorization=factorization, ranks=None if ranks is None else [int(r) for r in ranks],
            params=int(factorized_params(layer.shape, factorization, ranks, layer.bias)),
            dense_params=layer.dense_params, error=layer.error_of(factorization, ranks), max_ranks=list(layer.max_ranks),
        ))
    params_after = params_before - sum(p.dense_params for p in planned) + sum(p.params for p in planned)
    cost_after = params_after if cost == "params" else fixed + sum(_layer_cost(layer, o, cost) for layer, o in zip(layers, options))
    solver["wall_time_total"] = time.perf_counter() - began
    return Plan(
        method=method, budget=budget.value, budget_cost=int(cap), cost=cost,
        image_size=None if image_size is None else [int(s) for s in image_size],
        params_before=params_before, params_after=int(params_after), cost_before=int(cost_before), cost_after=int(cost_after),
        layers=planned, skipped=list(skipped), solver=solver,
    )
