"""Property-based: random shapes and values thrown at FeatureSelection and solve.

Nothing but the documented errors (ValueError, TypeError) may come out, and a
successful solve returns k distinct in-range features with a finite objective.
"""

import warnings

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import sparsesel as ss

FAST_OPTIONS = {"sequential_attention": {"epochs": 4}}

elements = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64, min_value=-1e6, max_value=1e6),
    st.sampled_from([np.nan, np.inf, 0.0, 1.0]),
)


@st.composite
def inputs(draw):
    n = draw(st.integers(0, 12))
    d = draw(st.integers(0, 6))
    ndim = draw(st.sampled_from([1, 2, 2, 2, 3]))
    shape = (n, d) if ndim == 2 else ((n,) if ndim == 1 else (n, d, 1))
    X = draw(hnp.arrays(np.float64, shape, elements=elements))
    y_len = draw(st.sampled_from([n, n, n, max(n - 1, 0)]))
    y = draw(hnp.arrays(np.float64, (y_len,), elements=elements))
    k = draw(st.one_of(st.integers(-2, 8), st.just(2.5)))
    loss = draw(st.sampled_from(["squared", "squared", "logistic", "bogus"]))
    if loss == "logistic" and draw(st.booleans()):
        y = np.asarray(draw(hnp.arrays(np.int64, (y_len,), elements=st.integers(0, 2))), dtype=float)
    return X, y, k, loss


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs(), st.data())
def test_only_documented_errors(args, data):
    X, y, k, loss = args
    try:
        problem = ss.FeatureSelection(X, y, k=k, loss=loss)
    except (ValueError, TypeError):
        return
    solver = data.draw(st.sampled_from(sorted(ss.solvers_for(problem))))
    options = FAST_OPTIONS.get(solver, {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ill-conditioned random data may warn; it must not raise
        try:
            result = ss.solve(problem, solver=solver, **options)
        except (ValueError, TypeError):
            return
    assert len(result.selected) == problem.k
    assert len(set(result.selected)) == problem.k
    assert all(0 <= i < problem.n_features for i in result.selected)
    assert np.isfinite(result.objective)
