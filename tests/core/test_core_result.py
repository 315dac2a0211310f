"""The Result type."""

import json
import math

import numpy as np
import pytest

from sparsesel import STATUSES, Result


def test_result_normalises_fields():
    r = Result(selected=[np.int64(3), 1], objective=np.float32(2.5), bound=np.float64(1.0), status="optimal")
    assert r.selected == (3, 1)
    assert isinstance(r.objective, float) and r.objective == 2.5
    assert r.bound == 1.0


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
