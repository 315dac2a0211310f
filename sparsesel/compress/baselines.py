"""Baselines compared with the packing plan at the same parameter budget.

* ``uniform`` -- the same fraction of every rank (:func:`sparsesel.compress.plan.plan`, ``method="uniform"``);
* ``energy`` -- the same kept fraction of every unfolding's spectral energy (``method="energy"``);
* ``magnitude`` -- structured (channel) L2-magnitude pruning to at most the budget's parameters.
  UHDformer: our own pruning of its block-internal channels
  (:func:`sparsesel.compress.channel_pruning.magnitude_prune_uhdformer`: Torch-Pruning's group
  importance, one global threshold on the mean-normalised scores), because Torch-Pruning cannot
  trace it. Other networks: Torch-Pruning (``torch_pruning.pruner.MagnitudePruner``, L2 group
  importance, the same ratio for every group, bisected); a network it cannot trace gives a
  ``ValueError``.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Sequence

import torch
from torch import nn

from sparsesel.budget import Budget
from sparsesel.compress.apply import apply, count_params
from sparsesel.compress.plan import plan

__all__ = ["BASELINES", "baseline_model", "magnitude_prune"]

BASELINES: tuple[str, ...] = ("uniform", "energy", "magnitude")


def magnitude_prune(model: nn.Module, budget_params: int, example: torch.Tensor | None = None, *, ignored: Sequence[str] = (),
                    iterations: int = 12) -> nn.Module:
    """Channel-prune a copy of ``model`` (not modified) to at most ``budget_params`` parameters.

    Parameters
    ----------
    model : torch.nn.Module
        A network whose adapter names its own channel pruner (UHDformer:
        :func:`~sparsesel.compress.channel_pruning.magnitude_prune_uhdformer`) is pruned by it
        (``example``, ``ignored`` and ``iterations`` are not used; the result's
        ``channel_pruning`` attribute holds kept channels per group and the threshold);
        any other network by Torch-Pruning.
    budget_params : int
    example : torch.Tensor, optional
        An input Torch-Pruning traces the network with (required for non-UHDformer networks).
    ignored : sequence of str
        Layers Torch-Pruning must not prune (the last conv/linear layer never is).
    iterations : int
        Bisection steps of Torch-Pruning's ratio.

    Raises
    ------
    ValueError
        If the budget cannot be met, or Torch-Pruning cannot trace the network.
    """
    from sparsesel.nets.adapter import adapter_for

    pruner = adapter_for(model).channel_pruner
    if pruner is not None:
        module_name, _, function = pruner.partition(":")
        return getattr(importlib.import_module(module_name), function)(model, budget_params)[0]
    if example is None:
        raise ValueError(f"magnitude pruning of a {type(model).__name__} needs an example input for Torch-Pruning")
    import torch_pruning as tp

    def pruned(ratio: float) -> nn.Module:
        work = copy.deepcopy(model).eval()
        layers = [work.get_submodule(name) for name in ignored]
        # the last layer (image channels) must keep its outputs
        convs = [m for m in work.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        pruner = tp.pruner.MagnitudePruner(work, example, importance=tp.importance.MagnitudeImportance(p=2),
                                           pruning_ratio=ratio, global_pruning=False, ignored_layers=layers + convs[-1:])
        pruner.step()
        return work

    try:
        low, high = 0.0, 0.95
        best = None
        for _ in range(iterations):
            mid = 0.5 * (low + high)
            candidate = pruned(mid)
            if count_params(candidate) <= budget_params:
                best, high = candidate, mid
            else:
                low = mid
        if best is None:
            candidate = pruned(high)
            if count_params(candidate) > budget_params:
                raise ValueError(f"Torch-Pruning cannot reach {budget_params} parameters (at ratio {high}: {count_params(candidate)})")
            best = candidate
        with torch.no_grad():
            best(example)  # the pruned network must still run
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001 - tracing failures come as many types
        raise ValueError(f"Torch-Pruning failed on {type(model).__name__}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    return best


def baseline_model(model: nn.Module, name: str, budget: float | int | Budget, *, example: torch.Tensor, analysis=None) -> tuple[nn.Module, dict]:
    """The baseline ``name`` compression of ``model`` (not modified) at ``budget`` (parameters, as
    :func:`~sparsesel.compress.plan.plan` takes it); returns (network, info)."""
    if name in ("uniform", "energy"):
        p = plan(model, budget, method=name, analysis=analysis)
        return apply(model, p), {"plan_objective": p.solver.get("objective"), "params": p.params_after}
    if name == "magnitude":
        cap = Budget.coerce(budget, "params").resolve(count_params(model))
        net = magnitude_prune(model, cap, example)
        info = {"params": count_params(net)}
        if getattr(net, "channel_pruning", None) is not None:
            info.update(threshold=net.channel_pruning["threshold"], min_params=net.channel_pruning["min_params"])
        return net, info
    raise ValueError(f"unknown baseline {name!r}; choose one of {BASELINES}")
