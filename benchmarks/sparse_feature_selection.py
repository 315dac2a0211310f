"""Feature selection on a large scipy sparse X: peak memory and time of ``omp``, ``greedy_forward`` and ``lasso``.

A 100000 × 5000 CSR matrix with 0.1% non-zeros (dense float64: 3.7 GiB; stored: ~6 MiB), 10 true
features, k = 10. Peak memory is ``tracemalloc``'s peak during ``ss.solve`` (numpy and scipy
allocations; measured after a warm-up solve so that imports do not count). Time is the best of
``--repeats`` runs (a shared machine: noisy). For comparison, the same solver on a dense copy is
not run (it would need the 3.7 GiB array); the dense array's size is printed instead.

Usage::

    python benchmarks/sparse_feature_selection.py            # ~1 min
    python benchmarks/sparse_feature_selection.py --quick    # 20000 × 1000
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc
from pathlib import Path

import numpy as np
import scipy.sparse as sp

import sparsesel as ss

SOLVERS = ("omp", "greedy_forward", "lasso")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output-dir", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    n, d = (20_000, 1_000) if args.quick else (100_000, 5_000)
    rng = np.random.default_rng(0)
    X = sp.random_array((n, d), density=0.001, rng=rng, format="csr")
    beta = np.zeros(d)
    beta[rng.choice(d, 10, replace=False)] = 3 * rng.standard_normal(10)
    y = X @ beta + 0.1 * rng.standard_normal(n)
    problem = ss.FeatureSelection(X, y, 10)
    ss.solve(ss.FeatureSelection(np.eye(3), np.arange(3.0), 1), "omp")  # imports and registry outside the timing
    stored = problem.X.data.nbytes + problem.X.indices.nbytes + problem.X.indptr.nbytes
    rows = []
    for solver in SOLVERS:
        tracemalloc.start()
        result = ss.solve(problem, solver)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        best = min(_timed(problem, solver) for _ in range(args.repeats))
        rows.append({"solver": solver, "peak_mib": peak / 2**20, "seconds": best, "selected": list(result.selected)})
    print(f"X: {n} × {d}, {problem.X.nnz} non-zeros ({stored / 2**20:.1f} MiB stored; dense {n * d * 8 / 2**30:.2f} GiB)")
    print(f"{'solver':<16}{'peak MiB':>10}{'seconds':>10}")
    for row in rows:
        print(f"{row['solver']:<16}{row['peak_mib']:>10.1f}{row['seconds']:>10.3f}")
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = "sparse_feature_selection_quick" if args.quick else "sparse_feature_selection"
    payload = {
        "command": "python benchmarks/sparse_feature_selection.py" + (" --quick" if args.quick else ""),
        "shape": [n, d],
        "nnz": int(problem.X.nnz),
        "stored_mib": stored / 2**20,
        "dense_gib": n * d * 8 / 2**30,
        "rows": rows,
    }
    (out / f"{stem}.json").write_text(json.dumps(payload, indent=2))
    print(f"wrote {out / (stem + '.json')}")


def _timed(problem, solver: str) -> float:
    start = time.perf_counter()
    ss.solve(problem, solver)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
