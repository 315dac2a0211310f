"""The solver registry: a declarative table of the bundled solvers, plus solvers registered at run time.

A solver is a plain function ``solver(problem, **options) -> Result``. Its
keyword-only parameters, with their defaults, are its options; :func:`solve`
rejects any other option with a message listing the valid ones.

Two ways in
-----------
* **Bundled solvers** are rows of the table :data:`solvers.BUNDLED` (:class:`SolverEntry`: name,
  problem kinds as dotted class paths, module, one-line description, and an optional cheap
  ``supports`` predicate). The registry reads the table without importing any solver module;
  a module is imported the first time one of its solvers is used (:func:`solve`,
  :func:`solver_options`), and registers its functions with :func:`register_solver` then.
  So ``solve(FeatureSelection(...), "omp")`` imports only ``solvers.omp`` (numpy and scipy),
  never torch or OR-tools.
* **Other solvers** register themselves with the :func:`register_solver` decorator when their
  module is imported: a test or a script, or a third-party package through the
  ``sparsesel.solvers`` entry-point group (loaded the first time the registry is asked for
  solvers it does not know from the table: listing, or a name the table lacks).

``supports(problem)`` says whether a solver accepts *this* instance (not only its kind):
it returns ``True``, or ``False``/a string giving the reason it refuses. :func:`solvers_for`
lists only the solvers that accept the instance, and :func:`solve` refuses the others with
the reason.
"""

from __future__ import annotations

import importlib
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sparsesel.problems.base import Problem
from sparsesel.result import Result

SolverFunction = Callable[..., Result]
#: ``supports(problem) -> True | False | str``: ``True`` accepts, anything else refuses (a str says why).
Supports = Callable[[Problem], "bool | str"]

ENTRY_POINT_GROUP = "sparsesel.solvers"
#: The package whose ``BUNDLED`` table lists the bundled solvers.
BUNDLED_PACKAGE = "solvers"


@dataclass(frozen=True)
class SolverEntry:
    """A row of the bundled solvers' table: what the registry knows before importing a solver.

    Parameters
    ----------
    name : str
        The name users pass to :func:`solve`.
    kinds : tuple of str
        Dotted paths of the problem classes it solves (``"sparsesel.problems.feature_selection.FeatureSelection"``);
        subclasses of a kind are accepted too.
    module : str
        The module whose import registers the solver function (with :func:`register_solver`).
    description : str
        One line shown by :func:`solvers_for` and ``sparsesel solvers``.
    supports : callable, optional
        A cheap predicate on the instance (reads the problem's fields, imports nothing heavy).
    """

    name: str
    kinds: tuple[str, ...]
    module: str
    description: str
    supports: Supports | None = None

    @property
    def kind_names(self) -> tuple[str, ...]:
        """The kinds' class names (``"FeatureSelection"``)."""
        return tuple(path.rsplit(".", 1)[-1] for path in self.kinds)


@dataclass(frozen=True)
class SolverSpec:
    """A registered solver function: its name, the kinds it accepts, its options and its predicate."""

    name: str
    function: SolverFunction
    kinds: tuple[type[Problem], ...]
    description: str
    options: dict[str, Any]
    supports: Supports | None = None

    def accepts(self, problem: Problem) -> bool:
        return isinstance(problem, self.kinds) and refusal(self.supports, problem) is None


_REGISTRY: dict[str, list[SolverSpec]] = {}
_table: tuple[SolverEntry, ...] | None = None
_entry_points_loaded = False


# ---------------------------------------------------------------------------
# registration
# ---------------------------------------------------------------------------


def register_solver(
    name: str,
    kinds: type[Problem] | tuple[type[Problem], ...],
    description: str,
    supports: Supports | None = None,
) -> Callable[[SolverFunction], SolverFunction]:
    """Register ``function`` as solver ``name`` for the problem classes ``kinds``.

    One name may be registered for several kinds by separate functions (e.g. a
    ``brute_force`` for feature selection and one for core shapes). Registering
    the same name twice for the same kind is an error.

    Parameters
    ----------
    name : str
        The name users pass as ``solve(problem, solver=name)``.
    kinds : Problem subclass or tuple of them
        The problem kinds this function solves.
    description : str
        One line shown by :func:`solvers_for` and ``sparsesel solvers``.
    supports : callable, optional
        ``supports(problem)`` returns ``True`` when the solver accepts this instance, else
        ``False`` or a string saying why not (shown by :func:`solve`). Default: every
        instance of ``kinds``. A bundled solver's predicate lives in its table row.
    """
    kinds_tuple = kinds if isinstance(kinds, tuple) else (kinds,)
    for kind in kinds_tuple:
        if not (isinstance(kind, type) and issubclass(kind, Problem)):
            raise TypeError(f"register_solver({name!r}): kinds must be Problem subclasses, got {kind!r}")
    if supports is not None and not callable(supports):
        raise TypeError(f"register_solver({name!r}): supports must be a callable problem -> bool | str, got {supports!r}")

    def decorate(function: SolverFunction) -> SolverFunction:
        spec = SolverSpec(name, function, kinds_tuple, description, _options_of(name, function), supports)
        for other in _REGISTRY.get(name, []):
            clash = set(other.kinds) & set(kinds_tuple)
            if clash and other.function is not function:
                raise ValueError(
                    f"solver {name!r} is already registered for {sorted(k.__name__ for k in clash)}"
                )
        _REGISTRY[name] = [s for s in _REGISTRY.get(name, []) if s.function is not function] + [spec]
        return function

    return decorate


def _options_of(name: str, function: SolverFunction) -> dict[str, Any]:
    """The keyword-only options (with their defaults) of a solver function, checked."""
    params = list(inspect.signature(function).parameters.values())
    if not params or params[0].kind not in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
        raise TypeError(f"solver {name!r} must take the problem as its first positional argument")
    options = {}
    for p in params[1:]:
        if p.kind is not p.KEYWORD_ONLY:
            raise TypeError(f"solver {name!r}: option {p.name!r} must be keyword-only (after '*')")
        if p.default is p.empty:
            raise TypeError(f"solver {name!r}: option {p.name!r} needs a default value")
        options[p.name] = p.default
    return options


def registered_solvers() -> list[SolverSpec]:
    """Every solver function registered so far (bundled modules imported so far, entry points, scripts)."""
    return [spec for specs in _REGISTRY.values() for spec in specs]


def refusal(supports: Supports | None, problem: Problem) -> str | None:
    """``None`` when ``supports`` accepts ``problem``, else the reason it refuses (a str)."""
    if supports is None:
        return None
    answer = supports(problem)
    if answer is True:
        return None
    if isinstance(answer, str) and answer:
        return answer
    return "its supports() predicate refuses this instance"


# ---------------------------------------------------------------------------
# the table and the entry points
# ---------------------------------------------------------------------------


def bundled_table() -> tuple[SolverEntry, ...]:
    """The rows of the bundled solvers' table (imports the ``solvers`` package, none of its modules)."""
    global _table
    if _table is None:
        rows = tuple(importlib.import_module(BUNDLED_PACKAGE).BUNDLED)
        for row in rows:
            if not isinstance(row, SolverEntry):
                raise TypeError(f"{BUNDLED_PACKAGE}.BUNDLED must hold SolverEntry rows, got {row!r}")
        _table = rows
    return _table


def load_entry_points() -> None:
    """Import every module of the ``sparsesel.solvers`` entry-point group (once)."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    for entry in entry_points(group=ENTRY_POINT_GROUP):
        entry.load()


def load_solvers() -> None:
    """Import every bundled solver module and every entry point (e.g. before timing solvers)."""
    for module in sorted({row.module for row in bundled_table()}):
        importlib.import_module(module)
    load_entry_points()


def _kind_paths(kind: type[Problem]) -> set[str]:
    return {f"{cls.__module__}.{cls.__qualname__}" for cls in kind.__mro__}


def _rows_for(kind: type[Problem]) -> dict[str, SolverEntry]:
    paths = _kind_paths(kind)
    return {row.name: row for row in bundled_table() if paths & set(row.kinds)}


def _registered_for(kind: type[Problem]) -> dict[str, SolverSpec]:
    found = {}
    for name, specs in _REGISTRY.items():
        for spec in specs:
            if issubclass(kind, spec.kinds):
                found[name] = spec
    return found


def _kind_of(problem: Problem | type[Problem], caller: str) -> type[Problem]:
    if isinstance(problem, Problem):
        return type(problem)
    if isinstance(problem, type) and issubclass(problem, Problem):
        return problem
    raise TypeError(f"{caller} expects a Problem or Problem subclass, got {type(problem).__name__}")


def _candidates(kind: type[Problem]) -> dict[str, tuple[str, Supports | None]]:
    """Every solver of ``kind``: name -> (description, supports), from the table and the registry."""
    load_entry_points()
    found: dict[str, tuple[str, Supports | None]] = {
        name: (spec.description, spec.supports) for name, spec in _registered_for(kind).items()
    }
    for name, row in _rows_for(kind).items():
        found[name] = (row.description, row.supports)
    return dict(sorted(found.items()))


# ---------------------------------------------------------------------------
# lookup
# ---------------------------------------------------------------------------


def solvers_for(problem: Problem | type[Problem]) -> dict[str, str]:
    """The solvers that accept this problem, with a line each.

    For an instance, only the solvers whose ``supports`` predicate accepts it; for a class,
    every solver of the kind. Bundled solvers are listed from the table (no solver module is
    imported).
    """
    kind = _kind_of(problem, "solvers_for")
    listed = {}
    for name, (description, supports) in _candidates(kind).items():
        if isinstance(problem, Problem) and refusal(supports, problem) is not None:
            continue
        listed[name] = description
    return listed


def all_solvers() -> dict[str, dict[str, str]]:
    """Every solver, grouped by the name of the problem kind: ``{kind: {name: line}}``.

    Bundled solvers come from the table (no solver module or problem module is imported).
    """
    load_entry_points()
    table: dict[str, dict[str, str]] = {}
    for name, specs in _REGISTRY.items():
        for spec in specs:
            for kind in spec.kinds:
                table.setdefault(kind.__name__, {})[name] = spec.description
    for row in bundled_table():
        for kind_name in row.kind_names:
            table.setdefault(kind_name, {})[row.name] = row.description
    return {kind: dict(sorted(rows.items())) for kind, rows in sorted(table.items())}


def solver_options(problem: Problem | type[Problem], solver: str) -> dict[str, Any]:
    """The options (with defaults) that ``solver`` accepts for this problem kind (imports its module)."""
    return dict(_resolve(_kind_of(problem, "solver_options"), solver).options)


def _resolve(kind: type[Problem], solver: str) -> SolverSpec:
    """The registered function of ``solver`` for ``kind``, importing its bundled module if needed."""
    if not isinstance(solver, str):
        raise TypeError(f"solver must be a name (str), got {type(solver).__name__}")
    row = _rows_for(kind).get(solver)
    if row is not None:
        importlib.import_module(row.module)
        spec = _registered_for(kind).get(solver)
        if spec is None:
            raise RuntimeError(f"module {row.module!r} did not register solver {solver!r} for {kind.__name__} "
                               f"as the table {BUNDLED_PACKAGE}.BUNDLED says")
        if spec.supports is None and row.supports is not None:
            spec = SolverSpec(spec.name, spec.function, spec.kinds, spec.description, spec.options, row.supports)
        return spec
    spec = _registered_for(kind).get(solver)
    if spec is None:
        load_entry_points()
        spec = _registered_for(kind).get(solver)
    if spec is None:
        valid = ", ".join(_candidates(kind)) or "(none registered)"
        raise ValueError(f"unknown solver {solver!r} for {kind.__name__}; valid solvers: {valid}")
    return spec


def solve(problem: Problem, solver: str, **options: Any) -> Result:
    """Solve ``problem`` with the registered solver ``solver``.

    Parameters
    ----------
    problem : Problem
        A validated problem instance (``FeatureSelection``, ``CoreShape``, ...).
    solver : str
        A name from :func:`solvers_for`.
    **options
        The solver's keyword options; anything else raises ``ValueError``.

    Returns
    -------
    Result
        With ``solver`` set to the name used and ``wall_time`` to the seconds spent.

    Raises
    ------
    ValueError
        An unknown solver or option, or a solver whose ``supports`` refuses this instance
        (the message gives its reason and the solvers that accept the instance).
    """
    if not isinstance(problem, Problem):
        raise TypeError(f"solve expects a Problem instance, got {type(problem).__name__}")
    spec = _resolve(type(problem), solver)
    reason = refusal(spec.supports, problem)
    if reason is not None:
        others = ", ".join(solvers_for(problem)) or "(none)"
        raise ValueError(f"solver {solver!r} does not accept this {type(problem).__name__}: {reason}; "
                         f"solvers that do: {others}")
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        valid = ", ".join(f"{k}={v!r}" for k, v in spec.options.items()) or "(none)"
        raise ValueError(f"solver {solver!r} got unknown option(s) {unknown}; valid options: {valid}")
    start = time.perf_counter()
    result = spec.function(problem, **options)
    elapsed = time.perf_counter() - start
    if not isinstance(result, Result):
        raise TypeError(f"solver {solver!r} returned {type(result).__name__}, not Result")
    return result.replace(solver=solver, wall_time=elapsed)
