"""Tucker packing: choose the core shape (one rank per mode) of a Tucker decomposition.

The *surrogate* objective is the discarded spectral energy
``D(r) = Σ_n Σ_{i > r_n} σ_{n,i}²`` (σ_{n,i}: singular values of the mode-``n`` unfolding).
It bounds the squared error of the HOSVD truncation at shape ``r`` and is at most ``N``
times the optimal Tucker error at that shape (Ghadiri, Fahrbach, Fu, Mirrokni, ICML 2023).
The size of the decomposition is ``Π_n r_n + Σ_n I_n r_n`` (core + factor matrices).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sparsesel.budget import Budget
from sparsesel.problems.base import Problem
from sparsesel.tensors.size_model import SizeModel
from sparsesel.tensors.spectra import as_real_tensor, mode_spectra
from sparsesel.validation import as_finite_array, check_int, check_tensor_shape


def budget_entries(budget: Any, full_size: int) -> int:
    """``budget`` in entries of a tensor of ``full_size`` entries (:class:`sparsesel.budget.Budget`:
    an int is a count, a float a fraction in ``(0, 1]`` rounded down exactly)."""
    return Budget.coerce(budget, "entries").resolve(full_size)


def check_spectrum(values: Any, name: str, max_length: int) -> np.ndarray:
    """Validate one spectrum: 1-D, finite, non-negative, non-increasing, length ``<= max_length``."""
    s = as_finite_array(values, name, ndim=1)
    if np.any(s < 0):
        raise ValueError(f"{name} has negative singular values (min {s.min():.3g}); singular values are >= 0")
    drops = np.flatnonzero(s[1:] > s[:-1])
    if drops.size:
        i = int(drops[0])
        raise ValueError(
            f"{name} must be sorted in non-increasing order; entry {i + 1} ({s[i + 1]:.6g}) exceeds entry {i} ({s[i]:.6g})"
        )
    if s.size > max_length:
        raise ValueError(f"{name} has {s.size} values but the matricization has rank at most {max_length}")
    s.setflags(write=False)
    return s


def checked_tensor(tensor: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    """The optional ``tensor`` as a read-only finite real array of exactly ``shape`` (``None`` stays ``None``)."""
    if tensor is None:
        return None
    tensor = as_real_tensor(tensor)
    if tensor.shape != shape:
        raise ValueError(f"tensor has shape {tensor.shape} but shape is {shape}")
    tensor.setflags(write=False)
    return tensor


@dataclass(frozen=True, eq=False)
class SpectralRankProblem(Problem):
    """Shared machinery of :class:`CoreShape` and ``TreeNetworkRanks``: one rank per *group*
    (mode or edge), energies ``σ²`` per group, a :class:`SizeModel` and an integer budget.

    Subclasses set, in ``__post_init__``, the attributes ``spectra`` (tuple of σ arrays),
    ``size_model``, ``budget`` (int), ``max_ranks`` and ``total_energy`` through
    :meth:`_finish`.
    """

    def _finish(self, spectra: Sequence[np.ndarray], size_model: SizeModel, budget: int, total_energy: float | None) -> None:
        with np.errstate(over="ignore"):
            energies = tuple(np.asarray(s, dtype=np.float64) ** 2 for s in spectra)
        if not all(np.all(np.isfinite(e)) for e in energies) or not math.isfinite(sum(float(e.sum()) for e in energies)):
            raise ValueError("singular values are too large: their squared sum overflows float64 (rescale the tensor)")
        group_totals = [float(math.fsum(e)) for e in energies]
        if total_energy is None:
            total = max(group_totals)
        else:
            total = float(total_energy)
            if not math.isfinite(total) or total < 0:
                raise ValueError(f"total_energy must be finite and >= 0, got {total_energy!r}")
            worst = max(range(len(group_totals)), key=group_totals.__getitem__)
            if group_totals[worst] > total * (1 + 1e-9) + 1e-300:
                raise ValueError(
                    f"total_energy={total:.6g} is smaller than the energy of spectrum {worst} ({group_totals[worst]:.6g})"
                )
        # tails[g][j-1] = energy discarded in group g at rank j (j = 1..K_g).
        tails = []
        for e, g_total in zip(energies, group_totals):
            base = total if total_energy is not None else g_total
            suffix = np.concatenate([np.cumsum(e[::-1])[::-1][1:], [0.0]])
            tail = suffix + max(base - g_total, 0.0)
            tail.setflags(write=False)
            tails.append(tail)
        for e in energies:
            e.setflags(write=False)
        object.__setattr__(self, "energies", energies)
        object.__setattr__(self, "tails", tuple(tails))
        object.__setattr__(self, "size_model", size_model)
        object.__setattr__(self, "budget", int(budget))
        object.__setattr__(self, "max_ranks", tuple(len(e) for e in energies))
        object.__setattr__(self, "total_energy", total)
        object.__setattr__(self, "_group_base", tuple(total if total_energy is not None else t for t in group_totals))

    # ----- evaluation -------------------------------------------------------------------
    @property
    def n_groups(self) -> int:
        return len(self.energies)

    def check_ranks(self, ranks: Sequence[int]) -> tuple[int, ...]:
        """Validate one rank per group, ``1 <= r_g <= max_ranks[g]``."""
        ranks = tuple(int(r) if isinstance(r, np.integer) else r for r in ranks)
        if len(ranks) != self.n_groups:
            raise ValueError(f"ranks must have {self.n_groups} entries, got {len(ranks)}")
        for g, r in enumerate(ranks):
            check_int(r, f"ranks[{g}]", low=1, high=self.max_ranks[g])
        return ranks

    def size(self, ranks: Sequence[int]) -> int:
        """Number of entries of the decomposition with these ranks (exact int)."""
        return self.size_model.size(self.check_ranks(ranks))

    def is_feasible(self, ranks: Sequence[int]) -> bool:
        return self.size(ranks) <= self.budget

    @property
    def min_size(self) -> int:
        """Size with every rank 1 (the smallest decomposition)."""
        return self.size_model.min_size

    def objective(self, ranks: Sequence[int]) -> float:
        """Discarded energy ``Σ_g Σ_{i > r_g} σ_{g,i}²`` (the surrogate, minimised)."""
        ranks = self.check_ranks(ranks)
        return float(math.fsum(self.tails[g][r - 1] for g, r in enumerate(ranks)))

    def kept_energy(self, ranks: Sequence[int]) -> float:
        """``Σ_g Σ_{i <= r_g} σ_{g,i}²`` (maximised; equals a constant minus :meth:`objective`)."""
        ranks = self.check_ranks(ranks)
        return float(math.fsum(math.fsum(self.energies[g][:r]) for g, r in enumerate(ranks)))

    def exact_kept_energy(self, ranks: Sequence[int]) -> Fraction:
        """:meth:`kept_energy` in exact rational arithmetic on the float64 values of ``σ²``."""
        return sum((Fraction(float(x)) for g, r in enumerate(ranks) for x in self.energies[g][:r]), Fraction(0))

    def relative_error_bound(self, ranks: Sequence[int]) -> float:
        """``objective / ‖X‖²``: bound on the squared relative error of the truncation."""
        return self.objective(ranks) / self.total_energy if self.total_energy > 0 else 0.0

    def describe(self, ranks: Sequence[int]) -> dict[str, Any]:
        """``info`` entries every solver reports: size, budget, relative error bound, kept energy."""
        ranks = self.check_ranks(ranks)
        return {
            "size": self.size(ranks),
            "budget": self.budget,
            "relative_error_bound": self.relative_error_bound(ranks),
            "kept_energy": self.kept_energy(ranks),
        }

    def infeasible_message(self) -> str:
        return (
            f"budget {self.budget} is below the size of the smallest decomposition (all ranks 1): "
            f"{self.min_size} entries"
        )


@dataclass(frozen=True, eq=False)
class CoreShape(SpectralRankProblem):
    """Choose ranks ``r_n`` of a Tucker decomposition within a size budget.

    Parameters
    ----------
    singular_values : sequence of array_like
        ``singular_values[n]``: singular values ``σ_{n,1} >= σ_{n,2} >= ... >= 0`` of the
        mode-``n`` unfolding, at most ``min(I_n, Π_{m≠n} I_m)`` of them. Ranks of mode ``n``
        range over ``1..len(singular_values[n])``; a shorter (leading) spectrum is allowed
        when ``total_energy`` is given, the missing tail being ``total_energy − Σσ²``.
    shape : sequence of int
        ``(I_0, ..., I_{N-1})``, ``N >= 2``.
    budget : int, float or Budget
        Entries the decomposition may hold (core ``Π r_n`` plus factors ``Σ I_n r_n``): an int is a
        count, a float a fraction in ``(0, 1]`` of ``Π I_n`` (rounded down exactly; see
        :class:`sparsesel.budget.Budget`, unit ``"entries"``).
        A budget below the all-ones size is accepted: solvers then return ``status="infeasible"``.
    total_energy : float, optional
        ``‖X‖²_F``. Default: the largest ``Σ_i σ_{n,i}²`` over the modes.
    tensor : ndarray, optional
        The tensor itself (kept by :meth:`from_tensor`; needed by ``greedy_tucker`` and
        ``ilp_refine``).

    Attributes
    ----------
    budget : int
        The resolved number of entries.
    max_ranks : tuple of int
    energies, tails : tuple of ndarray
        ``σ²`` per mode; ``tails[n][r-1]`` the energy discarded at rank ``r``.
    """

    singular_values: Sequence[Any]
    shape: Sequence[int]
    budget: int | float | Budget
    total_energy: float | None = None
    tensor: np.ndarray | None = None

    def __post_init__(self) -> None:
        shape = check_tensor_shape(self.shape)
        if isinstance(self.singular_values, np.ndarray) and self.singular_values.ndim == 1:
            raise ValueError("singular_values must hold one spectrum per mode (a sequence of 1-D arrays)")
        spectra_in = list(self.singular_values)
        if len(spectra_in) != len(shape):
            raise ValueError(f"singular_values has {len(spectra_in)} spectra but shape has {len(shape)} modes")
        full = math.prod(shape)
        spectra = tuple(
            check_spectrum(s, f"singular_values[{n}]", min(shape[n], full // shape[n])) for n, s in enumerate(spectra_in)
        )
        tensor = checked_tensor(self.tensor, shape)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "singular_values", spectra)
        object.__setattr__(self, "tensor", tensor)
        budget = budget_entries(self.budget, full)
        self._finish(spectra, SizeModel.tucker(shape), budget, self.total_energy)

    @classmethod
    def from_tensor(cls, X: Any, budget: int | float | Budget, *, method: str = "auto", seed: int = 0) -> CoreShape:
        """Build the problem from a tensor: its mode spectra, ``‖X‖²`` and the tensor itself.

        Only the leading ``⌊(B − Σ_{m≠n} I_m) / (I_n + 1)⌋`` values of mode ``n`` are computed
        (no feasible shape has a larger rank), so the spectra are cheap at small budgets.

        Parameters
        ----------
        X : array_like, shape (I_0, ..., I_{N-1})
            Finite real tensor (copied).
        budget : int or float
            As in the class.
        method, seed
            Passed to :func:`sparsesel.tensors.spectra.mode_spectra`.
        """
        X = as_real_tensor(X)
        shape = X.shape
        B = budget_entries(budget, X.size)
        caps = [max(1, (B - (sum(shape) - shape[n])) // (shape[n] + 1)) for n in range(X.ndim)]
        spectra = mode_spectra(X, max_ranks=caps, method=method, seed=seed)
        return cls(spectra, shape, B, total_energy=float(np.vdot(X, X)), tensor=X)

    def group_name(self, g: int) -> str:
        return f"mode {g}"
