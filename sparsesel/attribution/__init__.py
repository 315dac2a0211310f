"""Attribution: integrated gradients, Greedy PIG, baselines, SIC/AIC metrics and small models.

The problem kind is :class:`sparsesel.Attribution`; its solvers
(``integrated_gradients``, ``greedy_pig``, ``gradient``, ``gradient_x_input``,
``random``, ``brute_force``) live in ``solvers/attribution_*.py``. Importing this
package does not import torch-heavy submodules; import them by name
(``sparsesel.attribution.sic``, ``.models``, ``.baselines``, ``.paths``, ``.imputation``,
``.selection_scores``: the retrained and masked-model scores of selected tabular columns).

:func:`attribute` is the Captum-style entry point: a batch ``(B, ...)`` in, attributions
of the same shape out (:mod:`sparsesel.attribution.functional`).
"""

from sparsesel.attribution.functional import attribute

__all__ = ["attribute"]
