"""The declarative registry: the table matches what the modules register, modules are imported on
first use only, supports() filters instances, and entry-point solvers keep working."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import solvers
import sparsesel as ss
from sparsesel import registry

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str, extra_path: Path | None = None) -> dict:
    """Run ``code`` in a fresh interpreter (this checkout first on sys.path); it prints one JSON line."""
    paths = [str(ROOT)] + ([str(extra_path)] if extra_path is not None else [])
    prelude = f"import sys; sys.path[:0] = {paths!r}\n"
    done = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_module_registers_exactly_its_table_rows():
    modules = [f"solvers.{m.name}" for m in pkgutil.iter_modules(solvers.__path__) if not m.name.startswith("_")]
    for module in modules:
        importlib.import_module(module)
    registered = {
        (spec.name, tuple(sorted(f"{k.__module__}.{k.__qualname__}" for k in spec.kinds)), spec.function.__module__, spec.description)
        for spec in registry.registered_solvers() if spec.function.__module__.startswith("solvers.")
    }
    table = {(row.name, tuple(sorted(row.kinds)), row.module, row.description) for row in solvers.BUNDLED}
    assert registered == table
    assert len({(row.name, kind) for row in solvers.BUNDLED for kind in row.kinds}) == sum(len(r.kinds) for r in solvers.BUNDLED)


def test_solve_with_omp_imports_neither_torch_nor_ortools_nor_other_solvers():
    found = run_python("""
        import json, sys
        import numpy as np
        import sparsesel as ss
        X = np.random.default_rng(0).normal(size=(30, 6))
        problem = ss.FeatureSelection(X, X[:, 0] + X[:, 3], k=2)
        listed = sorted(ss.solvers_for(problem))
        kinds = sorted(ss.all_solvers())
        result = ss.solve(problem, "omp")
        print(json.dumps({"torch": "torch" in sys.modules, "ortools": "ortools" in sys.modules,
                          "numba": "numba" in sys.modules,
                          "solver_modules": sorted(m for m in sys.modules if m.startswith("solvers.")),
                          "listed": listed, "kinds": kinds, "selected": sorted(result.selected)}))
    """)
    assert not found["torch"] and not found["ortools"] and not found["numba"]
    assert found["solver_modules"] == ["solvers.omp"]
    assert found["listed"] == ["brute_force", "greedy_forward", "lasso", "omp", "sequential_attention"]
    assert "LayerAllocation" in found["kinds"] and "Attribution" in found["kinds"]
    assert found["selected"] == [0, 3]


def test_listing_solvers_on_the_command_line_imports_no_solver():
    found = run_python("""
        import contextlib, io, json, sys
        from sparsesel.cli import main
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            status = main(["solvers", "--json"])
        print(json.dumps({"status": status, "table": json.loads(out.getvalue()), "torch": "torch" in sys.modules,
                          "solver_modules": sorted(m for m in sys.modules if m.startswith("solvers."))}))
    """)
    assert found["status"] == 0 and not found["torch"] and found["solver_modules"] == []
    assert set(found["table"]["LayerAllocation"]) == {"brute_force", "cp_sat", "dp", "energy", "greedy", "uniform"}
    assert found["table"]["CoreShape"]["ilp"].startswith("exact surrogate optimum")


def test_solvers_for_lists_only_what_accepts_this_instance():
    X = np.random.default_rng(1).normal(size=(40, 5))
    logistic = ss.FeatureSelection(X, (X[:, 0] > 0).astype(float), k=2, loss="logistic")
    assert "omp" not in ss.solvers_for(logistic)
    assert "omp" in ss.solvers_for(ss.FeatureSelection)  # a class: every solver of the kind
    with pytest.raises(ValueError, match=r"solver 'omp' does not accept this FeatureSelection: omp supports "
                                         r"loss='squared' only .*; solvers that do: brute_force, greedy_forward, lasso"):
        ss.solve(logistic, "omp")
    without_tensor = ss.CoreShape([[3.0, 1.0], [2.0, 1.0]], (2, 2), 8)
    assert {"greedy_tucker", "ilp_refine"}.isdisjoint(ss.solvers_for(without_tensor))
    with pytest.raises(ValueError, match="needs the tensor itself"):
        ss.solve(without_tensor, "greedy_tucker")


def test_supports_given_to_register_solver_filters_and_explains():
    from dataclasses import dataclass

    @dataclass(frozen=True, eq=False)
    class Pick(ss.Problem):
        values: tuple

        def objective(self, selected):
            return float(sum(self.values[i] for i in selected))

    @ss.register_solver("pick_first", kinds=Pick, description="the first value",
                        supports=lambda p: True if len(p.values) > 0 else "no values to pick")
    def pick_first(problem):
        return problem.result((0,), status="feasible")

    @ss.register_solver("pick_never", kinds=Pick, description="refuses all", supports=lambda p: False)
    def pick_never(problem):  # pragma: no cover - refused before
        raise AssertionError

    assert ss.solvers_for(Pick((2.0,))) == {"pick_first": "the first value"}
    assert ss.solvers_for(Pick(())) == {}
    with pytest.raises(ValueError, match=r"solver 'pick_first' does not accept this Pick: no values to pick; solvers that do: \(none\)"):
        ss.solve(Pick(()), "pick_first")
    with pytest.raises(ValueError, match="its supports\\(\\) predicate refuses this instance"):
        ss.solve(Pick((1.0,)), "pick_never")
    result = ss.solve(Pick((2.0, 5.0)), "pick_first")
    assert result.objective == 2.0 and result.solver == "pick_first"
    with pytest.raises(TypeError, match="supports must be a callable"):
        ss.register_solver("x", kinds=Pick, description="x", supports="yes")


def test_entry_point_solvers_are_found_and_not_loaded_for_bundled_names(tmp_path):
    (tmp_path / "fake_sparsesel_plugin.py").write_text(textwrap.dedent("""
        import sparsesel as ss

        @ss.register_solver("first_k", kinds=ss.FeatureSelection, description="the first k columns (a plugin)")
        def first_k(problem):
            return problem.result(tuple(range(problem.k)))
    """))
    info = tmp_path / "fake_sparsesel_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-sparsesel-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[sparsesel.solvers]\nfirst_k = fake_sparsesel_plugin\n")
    found = run_python("""
        import json, sys
        import numpy as np
        import sparsesel as ss
        X = np.random.default_rng(0).normal(size=(20, 4))
        problem = ss.FeatureSelection(X, X[:, 1], k=2)
        ss.solve(problem, "omp")
        loaded_for_omp = "fake_sparsesel_plugin" in sys.modules
        listed = ss.solvers_for(problem)
        result = ss.solve(problem, "first_k")
        print(json.dumps({"loaded_for_omp": loaded_for_omp, "listed": listed.get("first_k"),
                          "selected": list(result.selected), "objective_ok": result.objective == problem.objective((0, 1)),
                          "in_table": "first_k" in ss.all_solvers()["FeatureSelection"]}))
    """, extra_path=tmp_path)
    assert found == {"loaded_for_omp": False, "listed": "the first k columns (a plugin)", "selected": [0, 1],
                     "objective_ok": True, "in_table": True}


def test_unknown_solver_lists_the_table_and_registered_solvers():
    problem = ss.LayerAllocation([[1, 2]], [[1.0, 0.0]], 2)
    with pytest.raises(ValueError, match=r"unknown solver 'packing' for LayerAllocation; valid solvers: brute_force, cp_sat, dp, energy, greedy, uniform"):
        ss.solve(problem, "packing")
    assert ss.solver_options(problem, "cp_sat") == {"time_limit": 60.0, "workers": 1, "seed": 0}
