"""The solver registry: solvers register themselves for the problem kinds they solve.

A solver is a plain function ``solver(problem, **options) -> Result``. Its
keyword-only parameters, with their defaults, are its options; :func:`solve`
rejects any other option with a message listing the valid ones.
"""

from __future__ import annotations

import importlib
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from sparsesel.problems.base import Problem
from sparsesel.result import Result

SolverFunction = Callable[..., Result]

ENTRY_POINT_GROUP = "sparsesel.solvers"


@dataclass(frozen=True)
class SolverSpec:
    """A registered solver: its name, the kinds it accepts, and its options."""

    name: str
    function: SolverFunction
    kinds: tuple[type[Problem], ...]
    description: str
    options: dict[str, Any]

    def accepts(self, problem: Problem) -> bool:
        return isinstance(problem, self.kinds)


_REGISTRY: dict[str, list[SolverSpec]] = {}
_loaded = False


def register_solver(
    name: str, kinds: type[Problem] | tuple[type[Problem], ...], description: str
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
    """
    kinds_tuple = kinds if isinstance(kinds, tuple) else (kinds,)
    for kind in kinds_tuple:
        if not (isinstance(kind, type) and issubclass(kind, Problem)):
            raise TypeError(f"register_solver({name!r}): kinds must be Problem subclasses, got {kind!r}")

    def decorate(function: SolverFunction) -> SolverFunction:
        signature = inspect.signature(function)
        params = list(signature.parameters.values())
        if not params or params[0].kind not in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
            raise TypeError(f"solver {name!r} must take the problem as its first positional argument")
        options = {}
        for p in params[1:]:
            if p.kind is not p.KEYWORD_ONLY:
                raise TypeError(f"solver {name!r}: option {p.name!r} must be keyword-only (after '*')")
            if p.default is p.empty:
                raise TypeError(f"solver {name!r}: option {p.name!r} needs a default value")
            options[p.name] = p.default
        spec = SolverSpec(name, function, kinds_tuple, description, options)
        for other in _REGISTRY.get(name, []):
            clash = set(other.kinds) & set(kinds_tuple)
            if clash and other.function is not function:
                raise ValueError(
                    f"solver {name!r} is already registered for {sorted(k.__name__ for k in clash)}"
                )
        _REGISTRY.setdefault(name, [])
        _REGISTRY[name] = [s for s in _REGISTRY[name] if s.function is not function] + [spec]
        return function

    return decorate


def load_solvers() -> None:
    """Import the bundled ``solvers`` package and every ``sparsesel.solvers`` entry point."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    importlib.import_module("solvers")
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        entry.load()


def _specs_for(problem: Problem | type[Problem]) -> dict[str, SolverSpec]:
    load_solvers()
    kind = problem if isinstance(problem, type) else type(problem)
    found = {}
    for name, specs in _REGISTRY.items():
        for spec in specs:
            if issubclass(kind, spec.kinds):
                found[name] = spec
    return dict(sorted(found.items()))


def solvers_for(problem: Problem | type[Problem]) -> dict[str, str]:
    """Names of the solvers registered for this problem (or problem class), with a line each."""
    if not (isinstance(problem, Problem) or (isinstance(problem, type) and issubclass(problem, Problem))):
        raise TypeError(f"solvers_for expects a Problem or Problem subclass, got {type(problem).__name__}")
    return {name: spec.description for name, spec in _specs_for(problem).items()}


def solver_options(problem: Problem | type[Problem], solver: str) -> dict[str, Any]:
    """The options (with defaults) that ``solver`` accepts for this problem kind."""
    return dict(_resolve(problem, solver).options)


def all_solvers() -> dict[str, dict[str, str]]:
    """Every registered solver, grouped by the name of the problem kind: ``{kind: {name: line}}``."""
    load_solvers()
    table: dict[str, dict[str, str]] = {}
    for name, specs in _REGISTRY.items():
        for spec in specs:
            for kind in spec.kinds:
                table.setdefault(kind.__name__, {})[name] = spec.description
    return {kind: dict(sorted(rows.items())) for kind, rows in sorted(table.items())}


def _resolve(problem: Problem | type[Problem], solver: str) -> SolverSpec:
    specs = _specs_for(problem)
    kind = problem.__name__ if isinstance(problem, type) else type(problem).__name__
    if not isinstance(solver, str):
        raise TypeError(f"solver must be a name (str), got {type(solver).__name__}")
    if solver not in specs:
        valid = ", ".join(specs) or "(none registered)"
        raise ValueError(f"unknown solver {solver!r} for {kind}; valid solvers: {valid}")
    return specs[solver]


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
    """
    if not isinstance(problem, Problem):
        raise TypeError(f"solve expects a Problem instance, got {type(problem).__name__}")
    spec = _resolve(problem, solver)
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
