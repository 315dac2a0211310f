"""One budget (sparsesel.budget.Budget): the meaning of a number, one rounding rule, messages naming the unit.

The rounding rule is checked against integer arithmetic on the decimal digits written here (and
``decimal.Decimal`` for floats), never against the code's own Fraction products.
"""

from __future__ import annotations

import json
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import sparsesel as ss
from sparsesel.budget import UNITS, Budget
from sparsesel.cli import main


def floor_of_decimal_text(text: str, total: int) -> int:
    """``floor(0.<digits> · total)`` by integer arithmetic on the digits of ``text`` ("0.ddd")."""
    whole, _, digits = text.partition(".")
    numerator = int(whole + digits)
    return numerator * total // 10 ** len(digits)


@settings(max_examples=300, deadline=None)
@given(digits=st.text("0123456789", min_size=1, max_size=12), total=st.integers(0, 10**15))
def test_fraction_text_rounds_down_exactly(digits, total):
    text = "0." + digits
    if int(digits) == 0:
        with pytest.raises(ValueError, match=r"must be a fraction in \(0, 1\] of the params"):
            Budget.parse(text, "params")
        return
    budget = Budget.parse(text, "params")
    expected = floor_of_decimal_text(text, total)
    if expected == 0:
        with pytest.raises(ValueError, match=rf"budget {text} of {total} params rounds down to 0 params"):
            budget.resolve(total)
    else:
        assert budget.resolve(total) == expected


@settings(max_examples=300, deadline=None)
@given(value=st.floats(min_value=1e-12, max_value=1.0, exclude_min=False), total=st.integers(1, 10**12))
def test_float_is_read_as_its_shortest_decimal_and_never_exceeds_it(value, total):
    numerator, denominator = Decimal(repr(value)).as_integer_ratio()  # the decimal the user wrote
    expected = numerator * total // denominator
    budget = Budget.coerce(value, "entries")
    if expected == 0:
        with pytest.raises(ValueError, match="rounds down to 0 entries"):
            budget.resolve(total)
        return
    units = budget.resolve(total)
    assert units == expected
    assert units * denominator <= numerator * total < (units + 1) * denominator  # never above the budget


@pytest.mark.parametrize(("value", "total", "expected"), [
    (0.29, 100, 29),  # int(0.29 * 100) is 28
    ("0.29", 100, 29),
    (0.57, 100, 57),  # 0.57 * 100 == 56.99999999999999
    (np.float32(0.7), 10, 7),  # read in its own precision, not as 0.69999998...
    (np.float64(0.29), 100, 29),
    (Fraction(1, 3), 10, 3),
    ("1/3", 10, 3),
    (Decimal("0.125"), 1000, 125),
    ("1e-2", 500, 5),
])
def test_known_fractions(value, total, expected):
    assert Budget.parse(value, "params").resolve(total) == expected


def test_one_means_one_unit_and_one_point_zero_the_whole():
    assert Budget.parse("1", "params").resolve(339323) == 1
    assert Budget.parse("1.0", "params").resolve(339323) == 339323
    assert Budget.coerce(1, "entries").resolve(100) == 1
    assert Budget.coerce(1.0, "entries").resolve(100) == 100
    assert Budget.coerce(np.int64(5000), "macs").resolve(10) == 5000  # a count may exceed the whole
    assert Budget.parse(" 5000 ", "params").value == 5000 and Budget.parse("0.5", "params").value == 0.5
    assert str(Budget.parse("0.5", "params")) == "0.5 of the params" and str(Budget.parse("7", "blocks")) == "7 blocks"


@pytest.mark.parametrize("unit", UNITS)
@pytest.mark.parametrize(("value", "error", "message"), [
    ("0", ValueError, r"--budget must be a fraction in \(0, 1\] of the {u} or a whole count of {c} >= 1, got 0$"),
    ("-5", ValueError, r"whole count of {c} >= 1, got -5$"),
    ("1.5", ValueError, r"fraction in \(0, 1\] of the {u} or a whole count of {c} >= 1, got 1.5$"),
    ("2e6", ValueError, r"got 2e6; a number written with a decimal point or exponent is a fraction: write the count as 2000000"),
    ("nan", ValueError, r"--budget must be a fraction in \(0, 1\] of the {u} \(e.g. 0.5\) or a whole count of {c} \(e.g. 5000\), got 'nan'"),
    ("abc", ValueError, r"of the {u} \(e.g. 0.5\) or a whole count of {c} \(e.g. 5000\), got 'abc'"),
    ("", ValueError, r"got ''"),
    (True, TypeError, r"--budget must be a fraction in \(0, 1\] of the {u} \(a float\) or a whole count of {c} \(an int\), got bool"),
    (float("inf"), ValueError, r"of the {u} or a whole count of {c}, got inf"),
    ([0.5], TypeError, r"got list"),
])
def test_messages_name_the_unit(unit, value, error, message):
    counted = "milliseconds" if unit == "latency" else unit  # a latency budget counts milliseconds
    with pytest.raises(error, match=message.format(u=unit, c=counted)):
        Budget.parse(value, unit, name="--budget")


def test_api_refuses_text_and_other_units():
    with pytest.raises(TypeError, match=r"got str \(read text with sparsesel.budget.Budget.parse\('0.5', 'params'\)\)"):
        Budget.coerce("0.5", "params")
    with pytest.raises(ValueError, match="budget is a budget of macs, but params are counted here"):
        Budget.coerce(Budget.parse("0.5", "macs"), "params")
    with pytest.raises(ValueError, match="unknown budget unit 'bytes'"):
        Budget.parse("0.5", "bytes")


# ------------------------------------------------------------------ each command = the API
def test_core_shape_command_resolves_as_the_problem(tmp_path, capsys):
    X = np.random.default_rng(0).standard_normal((4, 5, 5))  # 100 entries
    path = tmp_path / "x.npy"
    np.save(path, X)
    for text, expected in (("0.29", 29), ("0.57", 57), ("77", 77), ("1.0", 100)):
        status = main(["core-shape", "--tensor", str(path), "--budget", text, "--json"])
        assert status in (0, 1)
        assert json.loads(capsys.readouterr().out)["budget"] == expected
        assert ss.CoreShape.from_tensor(X, Budget.parse(text, "entries")).budget == expected
    assert main(["core-shape", "--tensor", str(path), "--budget", "1.5"]) == 2
    assert "--budget must be a fraction in (0, 1] of the entries or a whole count of entries >= 1, got 1.5" in capsys.readouterr().err


@settings(max_examples=25, deadline=None)
@given(digits=st.text("0123456789", min_size=1, max_size=6).filter(lambda d: int(d) > 0))
@example(digits="0001")  # 0.0001 of 60 entries: 0
def test_core_shape_command_and_problem_agree_on_any_fraction(tmp_path_factory, digits):
    X = np.arange(1.0, 61.0).reshape(3, 4, 5)  # 60 entries
    path = tmp_path_factory.mktemp("budget") / "x.npy"
    np.save(path, X)
    text = "0." + digits
    expected = floor_of_decimal_text(text, 60)
    import contextlib
    import io

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = main(["core-shape", "--tensor", str(path), "--budget", text, "--json"])
    if expected == 0:
        assert status == 2 and f"--budget {text} of 60 entries rounds down to 0 entries" in stderr.getvalue()
        return
    assert status in (0, 1) and json.loads(stdout.getvalue())["budget"] == expected
    assert ss.CoreShape.from_tensor(X, Budget.parse(text, "entries")).budget == expected


def test_select_command_resolves_as_the_selectors(capsys):
    from sparsesel.selectors import resolve_budget
    from sparsesel.tabular import load_table

    n_features = load_table("builtin:diabetes", None).X.shape[1]
    for text, value, expected in (("0.29", 0.29, floor_of_decimal_text("0.29", n_features)), ("0.5", 0.5, n_features // 2), ("3", 3, 3)):
        assert main(["select", "--data", "builtin:diabetes", "--k", text, "--json"]) == 0
        assert len(json.loads(capsys.readouterr().out)["selected"]) == resolve_budget(value, n_features) == expected
    assert main(["select", "--data", "builtin:diabetes", "--k", "0.01"]) == 2
    assert "--k 0.01 of 10 features rounds down to 0 features" in capsys.readouterr().err


def test_prune_density_is_a_fraction_of_the_blocks(tmp_path, capsys):
    import torch

    from sparsesel.nets import zoo

    torch.manual_seed(0)
    model = zoo.build_net("uhdformer", "small")
    path = tmp_path / "m.pt"
    zoo.save_net(model, path, net="uhdformer")
    assert main(["prune", str(path), "--density", "1", "--block", "4x4"]) == 2
    assert ("--density must be a fraction in (0, 1] of the blocks, written with a decimal point (e.g. 0.25; 1.0 keeps every "
            "block), got '1' (a whole number is a count of blocks)") in capsys.readouterr().err
    assert main(["prune", str(path), "--density", "1.5", "--block", "4x4"]) == 2
    assert "--density must be a fraction in (0, 1] of the blocks, written with a decimal point (e.g. 0.25; 1.0 keeps every block), got '1.5'\n" in capsys.readouterr().err
    out = tmp_path / "p.pt"
    assert main(["prune", str(path), "--density", "0.29", "--block", "4x4", "--min-blocks", "1", "--out", str(out)]) == 0
    summary = json.loads(out.with_name(out.name + ".prune.json").read_text())
    api = ss.BlockSparsification(model, block_shape="4x4", density=0.29, min_blocks=1)
    assert summary["target_density"] == 0.29 and summary["kept_blocks"] == sum(api.budget().values())


def test_plan_budget_count_and_fraction():
    import torch

    from sparsesel.compress import plan
    from sparsesel.nets import zoo

    torch.manual_seed(0)
    model = zoo.build_net("uhdformer", "small")
    total = sum(p.numel() for p in model.parameters())
    for value in (0.29, Budget.parse("0.29", "params"), Budget.parse("0.57", "params"), 0.5):
        budget = Budget.parse(value, "params")
        expected = floor_of_decimal_text(budget.text, total)
        p = plan(model, value)
        assert p.budget_cost == expected and p.params_after <= expected and p.budget == float(budget.text)
    assert plan(model, total // 2).budget_cost == total // 2
    with pytest.raises(TypeError, match="read text with sparsesel.budget.Budget.parse"):
        plan(model, "0.29")
    assert plan(model, 1.0).budget_cost == total
    with pytest.raises(ValueError, match=r"budget 1 \(1 params\) is too small: .*; 1 is a count of params: write a fraction "
                                         r"with a decimal point \(1.0: the whole network\)"):
        plan(model, 1)
    with pytest.raises(ValueError, match="got 2000000.0; .* write the count as 2000000"):
        plan(model, 2e6)
    with pytest.raises(ValueError, match="budget is a budget of macs, but params are counted here"):
        plan(model, Budget.parse("0.5", "macs"), cost="params")


def test_compress_command_resolves_as_plan(tmp_path):
    import torch

    from sparsesel.compress import plan
    from sparsesel.nets import zoo

    torch.manual_seed(0)
    model = zoo.build_net("uhdformer", "small")
    path = tmp_path / "m.pt"
    zoo.save_net(model, path, net="uhdformer")
    total = sum(p.numel() for p in model.parameters())
    out = tmp_path / "run"
    argv = ["compress", str(path), "--budget", "0.29", "--finetune-steps", "0", "--no-baselines", "--curve", "0.57",
            "--eval-count", "1", "--eval-size", "32", "--latency-repeats", "0", "--threads", "1", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["budget"] == 0.29 and report["plan"]["budget_cost"] == floor_of_decimal_text("0.29", total)
    assert report["plan"]["budget_cost"] == plan(model, 0.29).budget_cost
    packing = [point for point in report["curve"] if point["method"] == "packing"]
    assert packing[0]["budget"] == 0.57 and packing[0]["params"] <= floor_of_decimal_text("0.57", total)
