"""Compress a trained network under a global budget: plan -> apply -> fine-tune -> report.

>>> from sparsesel.compress import plan, apply
>>> p = plan(model, 0.5)                 # Tucker-2 / low-rank / block choice per layer, budget split by CP-SAT
>>> small = apply(model, p)              # a new module; `model` is untouched
>>> fast = deploy(small)                 # each factorized layer in its fastest form (refold="auto")

See :mod:`sparsesel.compress.plan`, :mod:`~sparsesel.compress.apply`,
:mod:`~sparsesel.compress.finetune`, :mod:`~sparsesel.compress.deploy`, :mod:`~sparsesel.compress.report`,
:mod:`~sparsesel.compress.baselines`, :mod:`~sparsesel.compress.run_folder` (the ``--out`` folder of a
run: its files, lock and resumable state).
"""

from sparsesel.compress.apply import apply, count_params, load_compressed, save_compressed
from sparsesel.compress.deploy import deploy
from sparsesel.compress.factorized import BlockSparseLinear, LowRankConv, LowRankLinear, Tucker2Conv
from sparsesel.compress.plan import LayerPlan, Plan, analyze, plan

__all__ = [
    "BlockSparseLinear",
    "LayerPlan",
    "LowRankConv",
    "LowRankLinear",
    "Plan",
    "Tucker2Conv",
    "analyze",
    "apply",
    "count_params",
    "deploy",
    "load_compressed",
    "plan",
    "save_compressed",
]
