"""Tensor math for rank selection: spectra, Tucker / tensor-train / tree fits, cost models, data.

One concept per module:

* :mod:`~sparsesel.tensors.spectra` -- singular values of unfoldings and matricizations
  (Gram-matrix eigenvalues; randomized SVD for huge modes).
* :mod:`~sparsesel.tensors.size_model` -- the number of entries of a decomposition as a sum
  of products of ranks (Tucker: core + factors; tree networks: one term per node).
* :mod:`~sparsesel.tensors.tucker` -- Tucker (HOOI, tensorly) at given ranks, its error, and the
  HOSVD truncation error of every shape at once.
* :mod:`~sparsesel.tensors.tree_networks` -- trees over modes (tensor train = path, Tucker = star),
  cut spectra and the hierarchical truncation at given edge ranks.
* :mod:`~sparsesel.tensors.datasets` -- benchmark tensors from bundled data or generated.
* :mod:`~sparsesel.tensors.tensorly_ranks` -- ``tucker_rank`` / ``tt_rank``: exact ranks within a
  parameter budget, ready for ``tensorly.decomposition.tucker`` / ``tensor_train``.
"""

from sparsesel.tensors.size_model import SizeModel
from sparsesel.tensors.spectra import matricization_spectrum, mode_spectra, mode_spectrum
from sparsesel.tensors.tensorly_ranks import tt_rank, tucker_rank
from sparsesel.tensors.tucker import HosvdErrorTable, tucker_fit, tucker_relative_error

__all__ = [
    "SizeModel",
    "HosvdErrorTable",
    "matricization_spectrum",
    "mode_spectra",
    "mode_spectrum",
    "tt_rank",
    "tucker_fit",
    "tucker_rank",
    "tucker_relative_error",
]
