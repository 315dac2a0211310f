"""Reliability: hostile network checkpoints (issue 17, item 3 and its 'unclear' cases).

Every file here is made in the test from a small network saved in one of the layouts that
``sparsesel.nets`` / ``sparsesel.compress`` read: the one format ``sparsesel.network`` (CSAttn, UHDformer,
a compressed CSAttn), the official UHDformer release, and the formats of earlier versions
(``sparsesel.nets``, ``sparsesel.uhdformer``, ``sparsesel.compress``, written here by hand). Each hostile case must be
refused by the API with a ``ValueError``/``FileNotFoundError`` that names the file and the problem,
and by the command line (``restore``, ``prune``, ``compress``) with one ``error:`` line, status 2 and
no traceback. Configurations that ask for networks far larger than their tensors (``width=2**20``:
a 4 TB convolution) can only be refused clearly if nothing is allocated first.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_helpers import expect_clear_error, run_cli

from sparsesel.compress import load_compressed, save_compressed
from sparsesel.compress.pipeline import compress_model
from sparsesel.data.image_files import write_image
from sparsesel.nets import UHDformer, UHDformerConfig, load_uhdformer, save_checkpoint, zoo

SMALL_UHDFORMER = UHDformerConfig(width=8, number_block=1, unit_num=1, num_heads=2, match_factor=2, ffn_expansion_factor=2)


def _seeded(build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return build().eval()


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> dict[str, Path]:
    """One valid file per layout, and a 16x16 input image."""
    folder = tmp_path_factory.mktemp("checkpoints")
    csattn = _seeded(lambda: zoo.build_net("csattn", "small"))
    uhdformer = _seeded(lambda: UHDformer(SMALL_UHDFORMER))
    compressed, _, _ = compress_model(csattn, 0.5)
    files = {
        "csattn": zoo.save_net(csattn, folder / "csattn.pt", net="csattn"),
        "uhdformer": save_checkpoint(uhdformer, folder / "uhdformer.pt"),
        "official": save_checkpoint(uhdformer, folder / "net_g.pth", layout="official"),
        "compressed": save_compressed(compressed, folder / "compressed.pt", net="csattn"),
    }
    # the formats of earlier versions
    state = lambda model: {k: v.detach().clone() for k, v in model.state_dict().items()}  # noqa: E731
    legacy = {
        "legacy_nets": {"format": "sparsesel.nets", "version": 1, "net": "csattn", "config": zoo.config_dict(csattn),
                        "params": state(csattn), "meta": {}},
        "legacy_uhdformer": {"format": "sparsesel.uhdformer", "version": 1, "config": SMALL_UHDFORMER.to_dict(), "structure": [],
                             "meta": {}, "state_dict": state(uhdformer)},
        "legacy_compressed": {"format": "sparsesel.compress", "version": 1, "net": "csattn", "config": zoo.config_dict(csattn),
                              "plan": compressed.compress_plan, "meta": {}, "state_dict": state(compressed)},
    }
    for key, payload in legacy.items():
        torch.save(payload, folder / f"{key}.pt")
        files[key] = folder / f"{key}.pt"
    files["image"] = write_image(folder / "in.png", np.random.default_rng(0).random((16, 16, 3)))
    return files


def _load_any(path: Path):
    """The API entry point for every layout (falls back to ``zoo.load_net``)."""
    return load_compressed(path)


# ------------------------------------------------------------------ the hostile cases
@dataclass(frozen=True)
class Case:
    """A hostile file: ``make(base_payload_or_None, path)`` writes it; ``fragments`` must appear in the error."""

    id: str
    base: str  # which valid file it starts from ("csattn", "uhdformer", "official", "compressed") or "bytes"
    make: Callable[[dict | None, Path], None]
    fragments: tuple[str, ...]


def _bytes(data: bytes) -> Callable[[dict | None, Path], None]:
    return lambda _payload, path: path.write_bytes(data)


def _foreign_zip(_payload, path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "not a network")


def _directory(_payload, path: Path) -> None:
    path.mkdir()


class _RunsCode:
    def __reduce__(self):
        return (print, ("this must never run",))


def _pickled_object(_payload, path: Path) -> None:
    with open(path, "wb") as handle:
        pickle.dump({"format": "sparsesel.nets", "params": _RunsCode()}, handle, protocol=2)


def _truncated_legacy(_payload, path: Path) -> None:
    torch.save({"params": {"w": torch.ones(1000)}}, path, _use_new_zipfile_serialization=False)
    path.write_bytes(path.read_bytes()[:700])


def _save(payload: dict, path: Path) -> None:
    torch.save(payload, path)


def _with(**changes) -> Callable[[dict | None, Path], None]:
    return lambda payload, path: _save({**payload, **changes}, path)


def _config(**changes) -> Callable[[dict | None, Path], None]:
    return lambda payload, path: _save({**payload, "config": {**payload["config"], **changes}}, path)


def _state_key(payload: dict) -> str:
    for key in ("params", "state_dict"):
        if key in payload and isinstance(payload[key], dict):
            return key
    raise AssertionError("no state in payload")


def _tensors(change: Callable[[str, torch.Tensor], torch.Tensor]) -> Callable[[dict | None, Path], None]:
    """Apply ``change(name, tensor)`` to every stored tensor (official files: under 'params')."""

    def make(payload, path):
        key = _state_key(payload)
        _save({**payload, key: {name: change(name, value) for name, value in payload[key].items()}}, path)

    return make


def _first(value_of: Callable[[torch.Tensor], torch.Tensor], name: str) -> Callable[[str, torch.Tensor], torch.Tensor]:
    return lambda key, tensor: value_of(tensor) if key == name else tensor


def _one_value(value: float, dtype: torch.dtype = torch.float32) -> Callable[[torch.Tensor], torch.Tensor]:
    def change(tensor):
        out = tensor.to(dtype).clone()
        out.view(-1)[0] = value
        return out

    return change


def _drop_and_add(payload, path):
    key = _state_key(payload)
    state = dict(payload[key])
    state.pop("enter.weight")
    state["extra.weight"] = torch.zeros(2)
    _save({**payload, key: state}, path)


def _plan_ranks(payload, path):
    plan = dict(payload["plan"])
    layers = [dict(layer) for layer in plan["layers"]]
    target = next(layer for layer in layers if layer["factorization"] == "tucker2")
    target["ranks"] = [10**6, 10**6]
    _save({**payload, "plan": {**plan, "layers": layers}}, path)


def _edit_ranks(payload, path):
    edits = [dict(edit) for edit in payload["edits"]]
    target = next(i for i, edit in enumerate(edits) if edit["args"]["factorization"] == "tucker2")
    edits[target] = {"kind": "factorize", "args": {**edits[target]["args"], "ranks": [10**6, 10**6]}}
    _save({**payload, "edits": edits}, path)


def _edit_layer(payload, path):
    edits = [dict(edit) for edit in payload["edits"]]
    edits[0] = {"kind": "factorize", "args": {**edits[0]["args"], "name": "nowhere"}}
    _save({**payload, "edits": edits}, path)


def _official_scalar_stem(payload, path):
    params = dict(payload["params"])
    params["restoration_network.enter.0.weight"] = torch.tensor(1.0)
    _save({"params": params}, path)


def _official_int_key(payload, path):
    _save({"params": {**payload["params"], 5: torch.zeros(1)}}, path)


FLOATS_TO = lambda dtype: lambda _key, tensor: tensor.to(dtype) if tensor.is_floating_point() else tensor  # noqa: E731

CASES = [
    # files that are not checkpoints at all
    Case("empty_file", "bytes", _bytes(b""), ("empty (0 bytes)",)),
    Case("text_file", "bytes", _bytes(b"width=8\nthis is a note, not a network\n"), ("not a torch checkpoint", "text")),
    Case("random_binary", "bytes", _bytes(np.random.default_rng(1).bytes(4096)[1:]), ("not a torch checkpoint",)),
    Case("foreign_zip", "bytes", _foreign_zip, ("zip archive, but not a torch checkpoint",)),
    Case("directory", "bytes", _directory, ("is a directory",)),
    Case("pickled_object", "bytes", _pickled_object, ("could run code",)),
    Case("truncated_legacy_pickle", "bytes", _truncated_legacy, ("corrupt or truncated",)),
    Case("truncated_zip", "csattn", lambda _p, path: None, ("corrupt or truncated",)),  # written in _write
    # sparsesel.network (CSAttn): configurations that do not fit the tensors
    Case("csattn_width_4096", "csattn", _config(width=4096), ("width=4096", "checkpoint (8, 3, 3, 3) vs network (4096, 3, 3, 3)")),
    Case("csattn_width_2_20", "csattn", _config(width=2**20), ("width=1048576", "enter.weight")),
    Case("csattn_million_blocks", "csattn", _config(blocks=[10**6, 1, 1]), ("blocks[0]=1000000", "refused before building")),
    Case("csattn_config_not_dict", "csattn", _with(config=[8, 1]), ("'config' must be a dict",)),
    Case("csattn_config_unknown_field", "csattn", _config(depth=3), ("bad configuration", "depth")),
    Case("csattn_config_text_width", "csattn", _config(width="8"), ("bad configuration",)),
    Case("csattn_unknown_net", "csattn", _with(net="resnet50"), ("unknown network 'resnet50'",)),
    Case("csattn_params_not_tensors", "csattn", _tensors(lambda k, v: "x" if k == "enter.bias" else v), ("not tensors: enter.bias",)),
    Case("csattn_missing_and_extra_keys", "csattn", _drop_and_add, ("missing key(s): enter.weight", "unexpected key(s): extra.weight")),
    Case("csattn_meta_not_dict", "csattn", _with(meta=[1, 2]), ("'meta' must be a dict",)),
    # sparsesel.network (CSAttn): weights
    Case("csattn_integer_weights", "csattn", _tensors(FLOATS_TO(torch.int64)), ("enter.weight", "integer values")),
    Case("csattn_boolean_weights", "csattn", _tensors(FLOATS_TO(torch.bool)), ("enter.weight", "boolean values")),
    Case("csattn_complex_weights", "csattn", _tensors(FLOATS_TO(torch.complex64)), ("enter.weight", "complex values")),
    Case("csattn_nan_weight", "csattn", _tensors(_first(_one_value(float("nan")), "enter.bias")), ("enter.bias", "1 NaN")),
    Case("csattn_inf_weight", "csattn", _tensors(_first(_one_value(float("-inf")), "enter.bias")), ("enter.bias", "1 infinite")),
    Case("csattn_huge_weight", "csattn", _tensors(_first(_one_value(1e30), "enter.bias")), ("enter.bias", "values up to 1e+30")),
    Case("csattn_float64_overflow", "csattn", _tensors(_first(_one_value(1e300, torch.float64), "enter.bias")),
         ("enter.bias", "overflows")),
    # sparsesel.network (UHDformer)
    Case("uhdformer_width_4096", "uhdformer", _config(width=4096), ("width=4096", "stem.weight: checkpoint (8, 3, 3, 3)")),
    Case("uhdformer_million_blocks", "uhdformer", _config(number_block=10**6), ("number_block=1000000", "refused before building")),
    Case("uhdformer_scale_factor", "uhdformer", _config(scale_factor=10**6), ("scale_factor=1000000", "down.weight")),
    Case("uhdformer_bad_heads", "uhdformer", _config(num_heads=3), ("bad config", "num_heads")),
    Case("uhdformer_unknown_edit", "uhdformer", _with(edits=[{"kind": "no_such_edit", "args": {}}]), ("unknown structural edit",)),
    Case("uhdformer_edits_not_list", "uhdformer", _with(edits="x"), ("'edits' must be a list",)),
    Case("uhdformer_edit_bad_args", "uhdformer", _with(edits=[{"kind": "factorize", "args": {"name": "stem"}}]),
         ("edits[0] (factorize): bad arguments",)),
    Case("uhdformer_future_version", "uhdformer", _with(version=2), ("unsupported sparsesel.network version 2",)),
    Case("uhdformer_factory_untrusted", "uhdformer", _with(net="os:system"), ("built by the factory 'os:system'", "--trust-code")),
    Case("uhdformer_nan_weight", "uhdformer", _tensors(_first(_one_value(float("nan")), "stem.weight")), ("stem.weight", "NaN")),
    Case("uhdformer_integer_weights", "uhdformer", _tensors(FLOATS_TO(torch.int32)), ("integer values",)),
    # the official UHDformer release
    Case("official_scalar_stem", "official", _official_scalar_stem, ("cannot infer the UHDformer configuration",)),
    Case("official_integer_weights", "official", _tensors(FLOATS_TO(torch.int16)), ("integer values", "enter.0.weight")),
    Case("official_huge_weight", "official", _tensors(_first(_one_value(-3e38), "restoration_network.out.2.bias")),
         ("out.2.bias", "values up to 3e+38")),
    Case("official_non_string_key", "official", _official_int_key, ("tensor names must be strings",)),
    # sparsesel.network (a compressed CSAttn: factorize edits)
    Case("compressed_width_4096", "compressed", _config(width=4096), ("width=4096",)),
    Case("compressed_edit_ranks", "compressed", _edit_ranks, ("bad configuration", "rank")),
    Case("compressed_edit_unknown_layer", "compressed", _edit_layer, ("the plan names layer 'nowhere'",)),
    Case("compressed_nan_weight", "compressed", _tensors(_first(_one_value(float("nan")), "enter.bias")), ("enter.bias", "NaN")),
    # the formats of earlier versions
    Case("legacy_nets_width_4096", "legacy_nets", _config(width=4096), ("width=4096", "checkpoint (8, 3, 3, 3) vs network (4096, 3, 3, 3)")),
    Case("legacy_nets_missing_params", "legacy_nets", lambda p, path: _save({k: v for k, v in p.items() if k != "params"}, path),
         ("lacks the keys ['params']",)),
    Case("legacy_uhdformer_unknown_edit", "legacy_uhdformer", _with(structure=[{"kind": "no_such_edit", "args": {}}]),
         ("unknown structural edit",)),
    Case("legacy_uhdformer_structure_not_list", "legacy_uhdformer", _with(structure="x"), ("'structure' must be a list",)),
    Case("legacy_compressed_plan_ranks", "legacy_compressed", _plan_ranks, ("bad configuration",)),
    Case("legacy_compressed_plan_not_plan", "legacy_compressed", _with(plan="nothing"), ("'plan' is not a compression plan",)),
    Case("legacy_compressed_nan_weight", "legacy_compressed", _tensors(_first(_one_value(float("nan")), "enter.bias")),
         ("enter.bias", "NaN")),
]
CASE_IDS = [case.id for case in CASES]


def _write(case: Case, bases: dict[str, Path], folder: Path) -> Path:
    path = folder / f"{case.id}.pt"
    if case.id == "truncated_zip":
        data = bases["csattn"].read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return path
    payload = None if case.base == "bytes" else torch.load(bases[case.base], weights_only=True)
    case.make(payload, path)
    return path


# ------------------------------------------------------------------ API
@pytest.mark.reliability("clear_error")
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_api_refuses_hostile_checkpoint(case, bases, tmp_path):
    path = _write(case, bases, tmp_path)
    with pytest.raises(ValueError) as caught:
        _load_any(path)
    message = str(caught.value)
    assert path.name in message
    for fragment in case.fragments:
        assert fragment in message, message


@pytest.mark.reliability("clear_error")
@pytest.mark.parametrize("case", [c for c in CASES if c.base in ("uhdformer", "official", "legacy_uhdformer")], ids=lambda c: c.id)
def test_load_uhdformer_refuses_hostile_checkpoint(case, bases, tmp_path):
    path = _write(case, bases, tmp_path)
    with pytest.raises(ValueError, match=path.name) as caught:
        load_uhdformer(path)
    for fragment in case.fragments:
        assert fragment in str(caught.value)


# ------------------------------------------------------------------ command line
@pytest.mark.reliability("clear_error")
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_restore_refuses_hostile_checkpoint(case, bases, tmp_path):
    path = _write(case, bases, tmp_path)
    out = tmp_path / "out.png"
    expect_clear_error(["restore", bases["image"], "--checkpoint", path, "--out", out], path.name, *case.fragments)
    assert not out.exists()


PRUNE_CASES = [c for c in CASES if c.base in ("bytes", "csattn", "official")][::2]


@pytest.mark.reliability("clear_error")
@pytest.mark.parametrize("case", PRUNE_CASES, ids=lambda c: c.id)
def test_prune_refuses_hostile_checkpoint(case, bases, tmp_path):
    path = _write(case, bases, tmp_path)
    out = tmp_path / "pruned.pt"
    expect_clear_error(["prune", path, "--density", "0.5", "--out", out], path.name, *case.fragments)
    assert not out.exists()


@pytest.mark.reliability("clear_error")
@pytest.mark.parametrize("case_id", ["empty_file", "text_file", "directory", "csattn_width_2_20", "csattn_nan_weight"])
def test_compress_refuses_hostile_checkpoint(case_id, bases, tmp_path):
    case = CASES[CASE_IDS.index(case_id)]
    path = _write(case, bases, tmp_path)
    expect_clear_error(["compress", path, "--out", tmp_path / "run", "--finetune-steps", "0", "--no-baselines", "--curve", "",
                        "--latency-repeats", "0", "--eval-count", "1", "--no-progress"], path.name, *case.fragments)


# ------------------------------------------------------------------ odd but valid files load right
@pytest.mark.reliability("right_result")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64], ids=str)
def test_other_float_dtypes_load_as_the_networks_float32(dtype, bases, tmp_path):
    payload = torch.load(bases["csattn"], weights_only=True)
    path = tmp_path / "cast.pt"
    key = _state_key(payload)
    torch.save({**payload, key: {k: v.to(dtype) if v.is_floating_point() else v for k, v in payload[key].items()}}, path)
    model, _ = _load_any(path)
    for name, value in model.state_dict().items():
        assert value.dtype == torch.float32
        torch.testing.assert_close(value, payload[key][name].to(dtype).to(torch.float32), rtol=0, atol=0)


@pytest.mark.reliability("right_result")
@pytest.mark.parametrize("layout", ["csattn", "uhdformer", "official", "compressed", "legacy_nets", "legacy_uhdformer",
                                    "legacy_compressed"])
def test_every_layout_loads_its_tensors_exactly(layout, bases):
    model, info = _load_any(bases[layout])
    stored = torch.load(bases[layout], weights_only=True)
    state = stored.get("params", stored.get("state_dict"))
    if layout == "official":
        from sparsesel.nets.checkpoints import official_to_ours

        state = official_to_ours({k.removeprefix("restoration_network."): v for k, v in state.items()})
    assert set(model.state_dict()) == set(state)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert not model.training


@pytest.mark.reliability("right_result")
def test_restore_reads_a_compressed_network(bases, tmp_path):
    """restore takes compress's output too (it used to look for UHDformer parameters in it)."""
    out = tmp_path / "o.png"
    run = run_cli(["restore", bases["image"], "--checkpoint", bases["compressed"], "--out", out])
    assert run.status == 0, run.err
    model, _ = load_compressed(bases["compressed"])
    from sparsesel.data.image_files import read_image

    x = torch.from_numpy(read_image(bases["image"]).transpose(2, 0, 1))[None]
    with torch.no_grad():
        expected = model.restore(x).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(read_image(out), np.round(expected * 255) / 255, atol=1e-6)


# ------------------------------------------------------------------ generated corruption: a clear error or the file's own tensors
def _reference(data: bytes, folder: Path):
    """What torch itself reads from these bytes (weights_only), or None if it cannot."""
    path = folder / "reference.pt"
    path.write_bytes(data)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - torch's own failure is the reference's "unreadable"
        return None


def _check_outcome(data: bytes, folder: Path) -> None:
    path = folder / "mutated.pt"
    path.write_bytes(data)
    try:
        model, _ = _load_any(path)
    except ValueError as exc:
        assert path.name in str(exc)
        return
    reference = _reference(data, folder)
    assert reference is not None, "loaded a file torch cannot read"
    stored = reference.get("params", reference.get("state_dict"))
    for key, value in model.state_dict().items():
        assert torch.equal(value, stored[key].to(value.dtype)), key
        assert bool(torch.isfinite(value).all())


@pytest.mark.reliability("clear_error")
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_truncated_or_flipped_checkpoint_bytes_give_a_clear_error_or_the_files_tensors(data, bases, tmp_path):
    original = bases[data.draw(st.sampled_from(["csattn", "uhdformer", "compressed"]))].read_bytes()
    mutation = data.draw(st.sampled_from(["truncate", "flip", "flip_many"]))
    if mutation == "truncate":
        mutated = original[: data.draw(st.integers(0, len(original) - 1))]
    else:
        mutated = bytearray(original)
        for _ in range(1 if mutation == "flip" else data.draw(st.integers(2, 40))):
            position = data.draw(st.integers(0, len(original) - 1))
            mutated[position] ^= data.draw(st.integers(1, 255))
        mutated = bytes(mutated)
    _check_outcome(mutated, tmp_path)


@pytest.mark.reliability("clear_error")
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.floats(0.0, 0.999), flips=st.lists(st.tuples(st.floats(0.0, 0.999), st.integers(1, 255)), max_size=3))
def test_cli_never_prints_a_traceback_for_corrupted_checkpoints(cut, flips, bases, tmp_path):
    original = bytearray(bases["csattn"].read_bytes())
    for where, mask in flips:
        original[int(where * len(original))] ^= mask
    mutated = bytes(original[: max(1, int(len(original) * (1 - cut / 4)))]) if cut > 0.5 else bytes(original)
    path = tmp_path / "cli.pt"
    path.write_bytes(mutated)
    out = tmp_path / "cli.png"
    out.unlink(missing_ok=True)
    run = run_cli(["restore", bases["image"], "--checkpoint", path, "--out", out])
    assert "Traceback" not in run.err
    assert run.status in (0, 2), run.err
    if run.status == 2:
        assert run.err.count("error:") == 1 and path.name in run.err, run.err
