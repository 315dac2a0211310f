"""The Result type."""

import json
import math

import numpy as np
import pytest

from sparsesel import STATUSES, Guarantee, Result


def test_result_normalises_fields():
    r = Result(selected=[np.int64(3), 1], objective=np.float32(2.5), lower_bound=np.float64(1.0),
               upper_bound=np.float32(2.5), status="optimal")
    assert r.selected == (3, 1)
    assert isinstance(r.objective, float) and r.objective == 2.5
    assert (r.lower_bound, r.upper_bound) == (1.0, 2.5) and isinstance(r.lower_bound, float)
    assert r.guarantee is None


def test_result_rejects_unknown_status():
    with pytest.raises(ValueError, match="status must be one of"):
        Result(selected=(), objective=0.0, status="great")


def test_statuses_are_the_documented_small_set():
    assert STATUSES == ("optimal", "feasible", "approximate", "time_limit", "infeasible", "error")


def test_to_dict_is_json_serialisable():
    r = Result(
        selected=(np.int64(1),),
        objective=math.nan,
        status="infeasible",
        info={"coef": np.array([1.0, 2.0]), "nested": {"x": np.float32(0.5)}},
        trace=({"step": np.int32(0)},),
    )
    text = json.dumps(r.to_dict())
    back = json.loads(text)
    assert back["selected"] == [1]
    assert back["objective"] == "nan"
    assert back["info"]["coef"] == [1.0, 2.0]
    assert back["trace"] == [{"step": 0}]


def test_result_is_immutable_and_replace_copies():
    r = Result(selected=(1,), objective=1.0)
    with pytest.raises(AttributeError):
        r.objective = 2.0  # type: ignore[misc]
    s = r.replace(objective=2.0)
    assert (r.objective, s.objective) == (1.0, 2.0)


def test_bounds_must_be_ordered_and_bound_is_gone():
    with pytest.raises(ValueError, match=r"lower_bound \(2.0\) exceeds upper_bound \(1.0\)"):
        Result(selected=(1,), objective=1.0, lower_bound=2.0, upper_bound=1.0)
    with pytest.raises(TypeError, match="bound"):
        Result(selected=(1,), objective=1.0, bound=1.0)  # the old field: lower_bound/upper_bound/guarantee now


def test_guarantee_states_its_factor_and_quantity():
    g = Guarantee(0.75, "kept_energy")
    assert str(g) == "kept_energy(selected) >= 0.75 x optimal kept_energy"
    r = Result(selected=(1, 2), objective=3.0, status="approximate", guarantee=g)
    back = json.loads(json.dumps(r.to_dict()))
    assert back["guarantee"] == {"factor": 0.75, "of": "kept_energy", "relation": ">=", "statement": str(g)}
    assert "guarantee='kept_energy(selected) >= 0.75" in repr(r)
    with pytest.raises(ValueError, match="factor must be finite and > 0"):
        Guarantee(0.0, "kept_energy")
    with pytest.raises(ValueError, match="relation must be one of"):
        Guarantee(0.5, "kept_energy", relation="==")
    with pytest.raises(TypeError, match="must be a Guarantee"):
        Result(selected=(1,), objective=1.0, guarantee=0.5)
