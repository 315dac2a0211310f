"""Property-based: random shapes and values thrown at FeatureSelection and solve.

Nothing but the documented errors (ValueError, TypeError) may come out, and a
successful solve returns k distinct in-range features with a finite objective.
"""

import warnings

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import sparsesel as ss

FAST_OPTIONS = {"sequential_attention": {"epochs": 4}}

finite = st.floats(min_value=-1e6, max_value=1e6, width=64)
anything = st.one_of(finite, st.sampled_from([np.nan, np.inf, -np.inf, 0.0, 1.0, 1e300]))


@st.composite
def inputs(draw):
    """Mostly well-formed inputs (so solvers run), sometimes broken ones."""
    n = draw(st.integers(0, 12))
    d = draw(st.integers(0, 6))
    well_formed = draw(st.integers(0, 9)) < 7
    ndim = 2 if well_formed else draw(st.sampled_from([1, 2, 3]))
    shape = (n, d) if ndim == 2 else ((n,) if ndim == 1 else (n, d, 1))
    X = draw(hnp.arrays(np.float64, shape, elements=finite if well_formed else anything))
    y_len = n if well_formed else draw(st.sampled_from([n, max(n - 1, 0)]))
    y = draw(hnp.arrays(np.float64, (y_len,), elements=finite if well_formed else anything))
    k = draw(st.integers(1, max(d, 1))) if well_formed else draw(st.one_of(st.integers(-2, 8), st.just(2.5)))
    loss = draw(st.sampled_from(["squared", "squared", "logistic"] + ([] if well_formed else ["bogus"])))
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
        event("rejected by FeatureSelection")
        return
    solver = data.draw(st.sampled_from(sorted(ss.solvers_for(problem))))
    options = FAST_OPTIONS.get(solver, {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ill-conditioned random data may warn; it must not raise
        try:
            result = ss.solve(problem, solver=solver, **options)
        except (ValueError, TypeError) as error:
            event(f"{solver}: documented error {type(error).__name__}")
            return
    event(f"{solver}: solved")
    assert len(result.selected) == problem.k
    assert len(set(result.selected)) == problem.k
    assert all(0 <= i < problem.n_features for i in result.selected)
    assert np.isfinite(result.objective)
