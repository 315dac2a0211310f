"""Reliability: image files read right and within limits (issue 17, items 3 and 4, and 'unclear' cases).

Every file is made in the test with Pillow, tifffile or by hand (a PNG writer of a few lines for
16-bit colour), from an array whose meaning is known, and the expected ``[0, 1]`` RGB array is
computed here in closed form (a 16-bit ramp over 65535, CMYK inks multiplied, palette entries
looked up, ...). EXIF orientations are checked against ``PIL.ImageOps.exif_transpose`` and
against Pillow's own ``Image.transpose`` applied to the expected array (not against our code).
Hostile files must be refused by the API and by every command that reads an image (``restore``,
``attribute``) with a message naming the file, before any large allocation.
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps
from reliability_helpers import expect_clear_error, run_cli

from sparsesel.data.image_files import DEFAULT_MAX_PIXELS, read_image, write_image
from sparsesel.nets import zoo

RNG = np.random.default_rng(17)

# Pillow's names for the EXIF orientations (the table of ImageOps.exif_transpose)
PILLOW_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def oriented(expected: np.ndarray, orientation: int) -> np.ndarray:
    """``expected`` (H, W, 3) turned by Pillow's transpose, channel by channel as float images."""
    if orientation not in PILLOW_TRANSPOSE:
        return expected
    planes = [np.asarray(Image.fromarray(np.ascontiguousarray(expected[..., c], dtype=np.float32)).transpose(PILLOW_TRANSPOSE[orientation]))
              for c in range(expected.shape[2])]
    return np.stack(planes, axis=2)


def grey3(values: np.ndarray) -> np.ndarray:
    return np.repeat(np.asarray(values, dtype=np.float64)[:, :, None], 3, axis=2)


def png_by_hand(path: Path, samples: np.ndarray, bit_depth: int) -> None:
    """A minimal PNG (no filter) of ``samples`` (H, W) grey or (H, W, 3|4) colour, big-endian samples."""
    height, width = samples.shape[:2]
    channels = 1 if samples.ndim == 2 else samples.shape[2]
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    dtype = ">u2" if bit_depth == 16 else "u1"
    rows = b"".join(b"\x00" + samples[i].astype(dtype).tobytes() for i in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def png_header_only(path: Path, width: int, height: int, colour_type: int = 2) -> None:
    """A PNG whose header claims ``width`` x ``height`` pixels but holds (almost) no data."""
    png_by_hand(path, np.zeros((1, 1, 3), np.uint8), 8)
    data = bytearray(path.read_bytes())
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    data[16:29] = header
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + header) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))


# ------------------------------------------------------------------ formats: file -> expected array
def _ramp16(height: int = 6, width: int = 11) -> np.ndarray:
    return np.linspace(0, 65535, height * width).round().astype(np.uint16).reshape(height, width)


def _pillow(array: np.ndarray, mode: str | None = None, suffix: str = ".png", **save) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / f"image{suffix}"
        if mode is None:
            image = Image.fromarray(array)
        elif mode == "1":
            image = Image.fromarray(array).convert("1")
        else:
            image = Image.frombytes(mode, (array.shape[1], array.shape[0]), array.tobytes())
        image.save(path, **save)
        return path

    return make


def _tiff(array: np.ndarray, **options) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / "image.tif"
        tifffile.imwrite(path, array, **options)
        return path

    return make


def _by_hand(array: np.ndarray, bit_depth: int) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / "image.png"
        png_by_hand(path, array, bit_depth)
        return path

    return make


def _palette(transparent: bool, suffix: str = ".png") -> tuple[Callable[[Path], Path], np.ndarray]:
    indices = RNG.integers(0, 4, (5, 7)).astype(np.uint8)
    palette = np.array([[10, 20, 30], [40, 50, 60], [70, 80, 90], [200, 210, 220]], dtype=np.uint8)

    def make(folder: Path) -> Path:
        path = folder / f"image{suffix}"
        image = Image.frombytes("P", (7, 5), indices.tobytes())
        image.putpalette(palette.ravel().tolist())
        image.save(path, **({"transparency": 2} if transparent else {}))
        return path

    return make, palette[indices] / 255.0


def _pgm(values: np.ndarray, maxval: int) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / "image.pgm"
        dtype = ">u2" if maxval > 255 else "u1"
        path.write_bytes(b"P5\n%d %d\n%d\n" % (values.shape[1], values.shape[0], maxval) + values.astype(dtype).tobytes())
        return path

    return make


def _format_cases() -> list[tuple[str, Callable[[Path], Path], np.ndarray, float]]:
    """(id, make file, expected (H, W, 3) in [0, 1], tolerance)."""
    ramp = _ramp16()
    grey8 = RNG.integers(0, 256, (5, 7)).astype(np.uint8)
    rgb8 = RNG.integers(0, 256, (5, 7, 3)).astype(np.uint8)
    rgba8 = RNG.integers(0, 256, (5, 7, 4)).astype(np.uint8)
    la8 = RNG.integers(0, 256, (5, 7, 2)).astype(np.uint8)
    bits = RNG.integers(0, 2, (5, 7)).astype(bool)
    cmyk = RNG.integers(0, 256, (5, 7, 4)).astype(np.uint8)
    rgb16 = RNG.integers(0, 65536, (5, 7, 3)).astype(np.uint16)
    rgba16 = RNG.integers(0, 65536, (5, 7, 4)).astype(np.uint16)
    float_grey = RNG.random((5, 7)).astype(np.float32)
    float_rgb = RNG.random((5, 7, 3))
    int16 = RNG.integers(0, 32768, (5, 7)).astype(np.int16)
    uint32 = RNG.integers(0, 2**32, (5, 7), dtype=np.uint64).astype(np.uint32)
    pgm1000 = RNG.integers(0, 1001, (5, 7))
    palette_png, palette_expected = _palette(False)
    transparent_png, transparent_expected = _palette(True)
    gif, gif_expected = _palette(False, ".gif")
    cmyk_expected = (1 - cmyk[..., :3] / 255.0) * (1 - cmyk[..., 3:] / 255.0)
    exact = 1e-7
    return [
        ("png_grey8", _pillow(grey8), grey3(grey8 / 255), exact),
        ("png_grey16_ramp", _pillow(ramp), grey3(ramp / 65535), exact),
        ("tiff_grey16_little_endian", _tiff(ramp), grey3(ramp / 65535), exact),
        ("tiff_grey16_big_endian", _tiff(ramp, byteorder=">"), grey3(ramp / 65535), exact),
        ("tiff_grey16_white_is_zero", _tiff(ramp, photometric="miniswhite"), grey3(1 - ramp / 65535), exact),
        ("png_rgb8", _pillow(rgb8), rgb8 / 255, exact),
        ("png_rgba8_alpha_dropped", _pillow(rgba8), rgba8[..., :3] / 255, exact),
        ("png_la8_alpha_dropped", _pillow(la8, "LA"), grey3(la8[..., 0] / 255), exact),
        ("png_palette", palette_png, palette_expected, exact),
        ("png_palette_transparent_entry", transparent_png, transparent_expected, exact),
        ("gif_palette", gif, gif_expected, exact),
        ("png_1bit", _pillow(bits.astype(np.uint8) * 255, "1"), grey3(bits), exact),
        ("tiff_cmyk", _pillow(cmyk, "CMYK", ".tif"), cmyk_expected, exact),
        ("tiff_float32_grey", _pillow(float_grey, None, ".tif"), grey3(float_grey), exact),
        ("tiff_float32_rgb", _tiff(float_rgb.astype(np.float32), photometric="rgb"), float_rgb.astype(np.float32), exact),
        ("tiff_float64_grey", _tiff(float_rgb[..., 0]), grey3(float_rgb[..., 0]), exact),
        ("tiff_float16_grey", _tiff(float_rgb[..., 1].astype(np.float16)), grey3(float_rgb[..., 1].astype(np.float16)), exact),
        ("tiff_rgb16", _tiff(rgb16, photometric="rgb"), rgb16 / 65535, exact),
        ("tiff_rgba16_alpha_dropped", _tiff(rgba16, photometric="rgb", extrasamples=["unassalpha"]), rgba16[..., :3] / 65535, exact),
        ("tiff_rgb16_planar", _tiff(np.moveaxis(rgb16, 2, 0), photometric="rgb", planarconfig="separate"), rgb16 / 65535, exact),
        ("tiff_int16", _tiff(int16), grey3(int16 / 32767), exact),
        ("tiff_uint32", _tiff(uint32), grey3(uint32 / (2**32 - 1)), exact),
        ("tiff_uint8_rgb", _tiff(rgb8, photometric="rgb"), rgb8 / 255, exact),
        # 16-bit colour PNG: Pillow decodes the high byte of each sample (documented; within 1/257)
        ("png_rgb16_high_byte", _by_hand(rgb16, 16), (rgb16 >> 8) / 255, exact),
        ("png_rgba16_high_byte", _by_hand(rgba16, 16), (rgba16[..., :3] >> 8) / 255, exact),
        ("png_grey16_by_hand", _by_hand(ramp, 16), grey3(ramp / 65535), exact),
        ("pgm_16bit", _pgm(ramp, 65535), grey3(ramp / 65535), exact),
        ("pgm_maxval_1000", _pgm(pgm1000, 1000), grey3(pgm1000 / 1000), 0.5 / 65535 + 1e-7),
        ("bmp_rgb8", _pillow(rgb8, None, ".bmp"), rgb8 / 255, exact),
        ("webp_lossless", _pillow(rgb8, None, ".webp", lossless=True), rgb8 / 255, exact),
    ]


FORMAT_CASES = _format_cases()


@pytest.mark.reliability("right_result")
@pytest.mark.parametrize(("make", "expected", "tolerance"), [c[1:] for c in FORMAT_CASES], ids=[c[0] for c in FORMAT_CASES])
def test_every_pixel_format_is_scaled_as_it_means(make, expected, tolerance, tmp_path):
    image = read_image(make(tmp_path))
    assert image.dtype == np.float32 and image.shape == expected.shape
    np.testing.assert_allclose(image, expected, rtol=0, atol=tolerance)


def test_sixteen_bit_colour_png_is_within_1_257_of_its_value(tmp_path):
    """The documented bound of the one format Pillow narrows (not a reliability case: a bound, not the answer)."""
    values = np.array([[[0, 255, 256], [65535, 65280, 32767]]], dtype=np.uint16)
    png_by_hand(tmp_path / "x.png", values, 16)
    assert np.abs(read_image(tmp_path / "x.png") - values / 65535).max() <= 1 / 257 + 1e-7


# ------------------------------------------------------------------ EXIF orientation
def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


@pytest.mark.reliability("right_result")
@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow_exif_transpose(orientation, suffix, tmp_path):
    pixels = RNG.integers(0, 256, (6, 9, 3)).astype(np.uint8)
    path = tmp_path / f"photo{suffix}"
    Image.fromarray(pixels).save(path, exif=_exif(orientation), **({"quality": 100} if suffix == ".jpg" else {"lossless": True} if suffix == ".webp" else {}))
    with Image.open(path) as handle:
        reference = np.asarray(ImageOps.exif_transpose(handle).convert("RGB"), dtype=np.float64) / 255
    image = read_image(path)
    assert image.shape == reference.shape == ((9, 6, 3) if orientation >= 5 else (6, 9, 3))
    np.testing.assert_allclose(image, reference, atol=1e-7)


@pytest.mark.reliability("right_result")
@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("depth", ["uint8", "uint16", "float32_rgb"])
def test_tiff_orientation_tag_is_applied(orientation, depth, tmp_path):
    """TIFFs (read by Pillow or tifffile) carry the orientation as a tag: checked against a hand-made turn."""
    ramp = _ramp16(5, 8)
    array = {"uint8": (ramp >> 8).astype(np.uint8), "uint16": ramp, "float32_rgb": np.stack([ramp / 65535] * 3, -1).astype(np.float32)}[depth]
    tifffile.imwrite(tmp_path / "t.tif", array, photometric="rgb" if array.ndim == 3 else "minisblack",
                     extratags=[(274, "H", 1, orientation, False)])
    expected = grey3(ramp / 65535) if depth != "uint8" else grey3((ramp >> 8) / 255)
    by_hand = {1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
               5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, -1), 7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
               8: lambda a: np.rot90(a, 1)}[orientation](expected)
    np.testing.assert_allclose(read_image(tmp_path / "t.tif"), by_hand, atol=1e-7)
    np.testing.assert_allclose(by_hand, oriented(expected, orientation), atol=1e-7)  # the hand table is Pillow's


# ------------------------------------------------------------------ generated files (hypothesis)
KINDS = ("L8", "L16", "RGB8", "RGBA8", "LA8", "1", "P", "F32", "CMYK", "RGB16_TIFF", "RGBF_TIFF", "INT16_TIFF")


def _generated(kind: str, height: int, width: int, seed: int, orientation: int, folder: Path) -> tuple[Path, np.ndarray]:
    """Write a ``kind`` file with EXIF ``orientation``; return it and the expected array (before orientation)."""
    rng = np.random.default_rng(seed)
    exif = {"exif": _exif(orientation)}
    tag = [(274, "H", 1, orientation, False)]
    if kind in ("L8", "RGB8", "RGBA8", "LA8"):
        channels = {"L8": 1, "RGB8": 3, "RGBA8": 4, "LA8": 2}[kind]
        raw = rng.integers(0, 256, (height, width, channels)).astype(np.uint8)
        mode = {"L8": "L", "RGB8": "RGB", "RGBA8": "RGBA", "LA8": "LA"}[kind]
        Image.frombytes(mode, (width, height), raw.tobytes()).save(folder / "g.png", **exif)
        return folder / "g.png", (grey3(raw[..., 0] / 255) if channels <= 2 else raw[..., :3] / 255)
    if kind == "L16":
        raw = rng.integers(0, 65536, (height, width)).astype(np.uint16)
        Image.fromarray(raw).save(folder / "g.png", **exif)
        return folder / "g.png", grey3(raw / 65535)
    if kind == "1":
        raw = rng.integers(0, 2, (height, width)).astype(bool)
        Image.fromarray(raw.astype(np.uint8) * 255).convert("1").save(folder / "g.png", **exif)
        return folder / "g.png", grey3(raw)
    if kind == "P":
        raw = rng.integers(0, 16, (height, width)).astype(np.uint8)
        palette = rng.integers(0, 256, (16, 3)).astype(np.uint8)
        image = Image.frombytes("P", (width, height), raw.tobytes())
        image.putpalette(palette.ravel().tolist())
        image.save(folder / "g.png", transparency=int(raw[0, 0]), **exif)
        return folder / "g.png", palette[raw] / 255
    if kind == "F32":
        raw = rng.random((height, width)).astype(np.float32)
        tifffile.imwrite(folder / "g.tif", raw, extratags=tag)
        return folder / "g.tif", grey3(raw)
    if kind == "CMYK":
        raw = rng.integers(0, 256, (height, width, 4)).astype(np.uint8)
        tifffile.imwrite(folder / "g.tif", raw, photometric="separated", extratags=tag)
        return folder / "g.tif", (1 - raw[..., :3] / 255) * (1 - raw[..., 3:] / 255)
    if kind == "RGB16_TIFF":
        raw = rng.integers(0, 65536, (height, width, 3)).astype(np.uint16)
        tifffile.imwrite(folder / "g.tif", raw, photometric="rgb", extratags=tag)
        return folder / "g.tif", raw / 65535
    if kind == "RGBF_TIFF":
        raw = rng.random((height, width, 3))
        tifffile.imwrite(folder / "g.tif", raw, photometric="rgb", extratags=tag)
        return folder / "g.tif", raw
    raw = rng.integers(0, 32768, (height, width)).astype(np.int16)  # INT16_TIFF
    tifffile.imwrite(folder / "g.tif", raw, extratags=tag)
    return folder / "g.tif", grey3(raw / 32767)


@pytest.mark.reliability("right_result")
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(KINDS), height=st.integers(1, 13), width=st.integers(1, 13), seed=st.integers(0, 2**32 - 1),
       orientation=st.integers(1, 8))
def test_generated_image_files_read_as_their_closed_form(kind, height, width, seed, orientation, tmp_path):
    path, expected = _generated(kind, height, width, seed, orientation, tmp_path)
    image = read_image(path)
    np.testing.assert_allclose(image, oriented(expected, orientation), rtol=0, atol=1e-7)
    path.unlink()


# ------------------------------------------------------------------ limits: checked on the header, before decoding
@pytest.mark.reliability("clear_error")
def test_header_claiming_ten_gigapixels_is_refused_before_decoding(tmp_path):
    """Our limit (here above Pillow's own guard, which is then lifted) is checked on the header: nothing is allocated."""
    png_header_only(tmp_path / "huge.png", 100_000, 100_000)
    with pytest.raises(ValueError, match=r"huge\.png' is 100000x100000 = 10,000,000,000 pixels, more than the limit of 5,000,000,000"):
        read_image(tmp_path / "huge.png", max_pixels=5_000_000_000)


@pytest.mark.reliability("clear_error")
def test_pillow_decompression_bomb_becomes_our_error(tmp_path):
    png_header_only(tmp_path / "bomb.png", 20_000, 20_000)  # 400 Mpx: over twice Pillow's MAX_IMAGE_PIXELS
    with pytest.raises(ValueError, match=r"bomb\.png' is 400,000,000 pixels, more than the limit of 67,108,864"):
        read_image(tmp_path / "bomb.png")


@pytest.mark.reliability("right_result")
def test_a_raised_limit_also_lifts_pillows_bomb_guard(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)  # stands for Pillow's 89 Mpx: 2 x 50 < 30 x 20
    pixels = RNG.integers(0, 256, (20, 30, 3)).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    np.testing.assert_allclose(read_image(tmp_path / "x.png", max_pixels=600), pixels / 255, atol=1e-7)
    assert Image.MAX_IMAGE_PIXELS == 50  # restored
    with pytest.raises(ValueError, match=r"x\.png' is 30x20 = 600 pixels, more than the limit of 80"):
        read_image(tmp_path / "x.png", max_pixels=80)  # our check on the header (Pillow's guard lifted)
    with pytest.raises(ValueError, match=r"x\.png' is 600 pixels, more than the limit of 40"):
        read_image(tmp_path / "x.png", max_pixels=40)  # Pillow's guard (2 x 50 < 600) speaks first, in our words


@pytest.mark.reliability("clear_error")
@pytest.mark.parametrize("max_pixels", [0, -5])
def test_nonpositive_pixel_limit_is_refused(max_pixels, tmp_path):
    write_image(tmp_path / "x.png", np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match="max_pixels must be a positive integer"):
        read_image(tmp_path / "x.png", max_pixels=max_pixels)


# ------------------------------------------------------------------ hostile image files: API and every command that reads images
def _text(path: Path) -> None:
    path.write_text("P6? no: this is a note that someone named .png\n")


def _truncated_png(path: Path) -> None:
    Image.fromarray(RNG.integers(0, 256, (64, 64, 3)).astype(np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:400])


def _truncated_jpeg(path: Path) -> None:
    Image.fromarray(RNG.integers(0, 256, (64, 64, 3)).astype(np.uint8)).save(path, format="JPEG")
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _float_tiff(value: float) -> Callable[[Path], None]:
    return lambda path: tifffile.imwrite(path, np.full((4, 4), value, np.float32))


IMAGE_CASES: list[tuple[str, str, Callable[[Path], None], tuple[str, ...]]] = [
    ("text_file", "note.png", _text, ("could not be read as an image",)),
    ("empty_file", "empty.png", lambda p: p.write_bytes(b""), ("could not be read as an image",)),
    ("random_bytes", "noise.jpg", lambda p: p.write_bytes(RNG.bytes(3000)), ("could not be read as an image",)),
    ("folder", "folder.png", lambda p: p.mkdir(), ("is a directory, not an image file",)),
    ("truncated_png", "cut.png", _truncated_png, ("could not be read as an image", "truncated")),
    ("truncated_jpeg", "cut.jpg", _truncated_jpeg, ("could not be read as an image",)),
    ("header_ten_gigapixels", "huge.png", lambda p: png_header_only(p, 100_000, 100_000), ("more than the limit of 67,108,864",)),
    ("decompression_bomb", "bomb.png", lambda p: png_header_only(p, 20_000, 20_000), ("400,000,000 pixels, more than the limit",)),
    ("float_nan", "nan.tif", _float_tiff(float("nan")), ("16 NaN",)),
    ("float_inf", "inf.tif", _float_tiff(float("inf")), ("16 infinite",)),
    ("float_above_one", "bright.tif", _float_tiff(3.5), ("outside [0, 1]", "3.5")),
    ("float_negative", "dark.tif", _float_tiff(-0.25), ("outside [0, 1]",)),
    ("int16_negative", "signed.tif", lambda p: tifffile.imwrite(p, np.full((4, 4), -7, np.int16)), ("negative values",)),
    ("truncated_tiff16", "cut.tif", lambda p: (tifffile.imwrite(p, np.ones((64, 64, 3), np.uint16) * 7, photometric="rgb"),
                                               p.write_bytes(p.read_bytes()[:2000])), ("could not be read as an image",)),
]
IMAGE_IDS = [case[0] for case in IMAGE_CASES]


@pytest.fixture(scope="module")
def network(tmp_path_factory) -> Path:
    return zoo.save_net(zoo.build_net("csattn", "small").eval(), tmp_path_factory.mktemp("net") / "csattn.pt", net="csattn")


def _hostile(case, folder: Path) -> Path:
    _id, name, make, _fragments = case
    path = folder / name
    make(path)
    return path


@pytest.mark.reliability("clear_error")
@pytest.mark.parametrize("case", IMAGE_CASES, ids=IMAGE_IDS)
def test_api_refuses_hostile_image(case, tmp_path):
    path = _hostile(case, tmp_path)
    with pytest.raises(ValueError) as caught:
        read_image(path)
    assert path.name in str(caught.value)
    for fragment in case[3]:
        assert fragment in str(caught.value)


@pytest.mark.reliability("clear_error")
@pytest.mark.parametrize("case", IMAGE_CASES, ids=IMAGE_IDS)
def test_restore_refuses_hostile_image(case, network, tmp_path):
    path = _hostile(case, tmp_path)
    out = tmp_path / "out.png"
    expect_clear_error(["restore", path, "--checkpoint", network, "--out", out], path.name, *case[3])
    assert not out.exists()


@pytest.mark.reliability("clear_error")
@pytest.mark.parametrize("case", IMAGE_CASES, ids=IMAGE_IDS)
def test_restore_refuses_hostile_mask(case, tmp_path):
    harmonizer = zoo.save_net(zoo.build_net("harmonizer", "small").eval(), tmp_path / "h.pt", net="harmonizer")
    image = write_image(tmp_path / "in.png", np.zeros((16, 16, 3)))
    mask = _hostile(case, tmp_path)
    expect_clear_error(["restore", image, "--checkpoint", harmonizer, "--mask", mask, "--out", tmp_path / "o.png"], mask.name, *case[3])


@pytest.mark.reliability("clear_error")
@pytest.mark.parametrize("case", IMAGE_CASES, ids=IMAGE_IDS)
def test_attribute_refuses_hostile_image(case, tmp_path):
    path = _hostile(case, tmp_path)
    expect_clear_error(["attribute", "--model", "builtin:digits-cnn", "--image", path, "--k", "3", "--solver", "gradient",
                        "--out", tmp_path / "run"], path.name, *case[3])
    assert not (tmp_path / "run" / "heatmap.png").exists()


@pytest.mark.reliability("clear_error")
@pytest.mark.parametrize("command", ["restore", "attribute"])
def test_max_pixels_flag_refuses_before_decoding(command, network, tmp_path):
    image = write_image(tmp_path / "in.png", np.zeros((16, 16, 3)))
    argv = (["restore", image, "--checkpoint", network, "--out", tmp_path / "o.png"] if command == "restore" else
            ["attribute", "--model", "builtin:digits-cnn", "--image", image, "--k", "3", "--solver", "gradient", "--out", tmp_path / "r"])
    expect_clear_error(argv + ["--max-pixels", "255"], "in.png", "16x16 = 256 pixels, more than the limit of 255", "--max-pixels")
    expect_clear_error(argv + ["--max-pixels", "0"], "--max-pixels must be a positive integer, got 0")


def test_max_pixels_default_is_stated_in_the_help(capsys):
    from sparsesel.cli import build_parser

    for command in ("restore", "attribute"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([command, "--help"])
        assert "67,108,864" in " ".join(capsys.readouterr().out.split())


# ------------------------------------------------------------------ the commands read images right, end to end
@pytest.mark.reliability("right_result")
@pytest.mark.parametrize("kind", ["grey16_png", "float_tiff", "exif_rotated_jpeg_lossless_png"])
def test_restore_sees_the_same_pixels_as_read_image_would_mean(kind, network, tmp_path):
    ramp = _ramp16(16, 24)
    if kind == "grey16_png":
        Image.fromarray(ramp).save(tmp_path / "in.png")
        path, expected = tmp_path / "in.png", grey3(ramp / 65535)
    elif kind == "float_tiff":
        values = RNG.random((16, 24, 3)).astype(np.float32)
        tifffile.imwrite(tmp_path / "in.tif", values, photometric="rgb")
        path, expected = tmp_path / "in.tif", values
    else:
        pixels = RNG.integers(0, 256, (16, 24, 3)).astype(np.uint8)
        Image.fromarray(pixels).save(tmp_path / "in.png", exif=_exif(6))
        path, expected = tmp_path / "in.png", np.rot90(pixels / 255, -1)
    run = run_cli(["restore", path, "--checkpoint", network, "--out", tmp_path / "o.png"])
    assert run.status == 0, run.err
    model, _ = zoo.load_net(network)
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(expected, dtype=np.float32).transpose(2, 0, 1))[None]
        want = model.restore(x).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    got = np.asarray(Image.open(tmp_path / "o.png"), dtype=np.float64) / 255
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=0.5 / 255 + 1e-6)


@pytest.mark.reliability("right_result")
def test_attribute_reads_a_sixteen_bit_digit_like_its_eight_bit_copy(tmp_path):
    from sklearn.datasets import load_digits

    digit = load_digits().images[0] / 16.0
    Image.fromarray(np.round(digit * 255).astype(np.uint8)).save(tmp_path / "d8.png")
    Image.fromarray(np.round(digit * 255).astype(np.uint16) * 257).save(tmp_path / "d16.png")  # same levels, 16 bits
    records = []
    for name in ("d8.png", "d16.png"):
        run = run_cli(["attribute", "--model", "builtin:digits-cnn", "--image", tmp_path / name, "--k", "5", "--solver", "gradient",
                       "--out", tmp_path / name.replace(".png", "")])
        assert run.status == 0, run.err
        records.append(json.loads((tmp_path / name.replace(".png", "") / "attribution.json").read_text()))
    assert records[0]["predicted"] == records[1]["predicted"] == 0
    np.testing.assert_allclose(records[0]["attribution"], records[1]["attribution"], rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------ writing never loses data silently
@pytest.mark.reliability("right_result")
@pytest.mark.parametrize("suffix", [".png", ".tif", ".tiff", ".bmp", ".ppm", ".pnm", ".webp"])
def test_lossless_outputs_keep_every_8_bit_level(suffix, tmp_path):
    levels = RNG.integers(0, 256, (7, 9, 3))
    written = write_image(tmp_path / f"o{suffix}", levels / 255.0)
    with Image.open(written) as handle:
        assert np.array_equal(np.asarray(handle.convert("RGB")), levels)


@pytest.mark.reliability("clear_error")
@pytest.mark.parametrize(("values", "fragment"), [(1.01, "[0, 1], got [1.01, 1.01]"), (-0.2, "got [-0.2, -0.2]"),
                                                  (float("nan"), "NaN")], ids=["above_one", "negative", "nan"])
def test_write_refuses_values_it_would_clip(values, fragment, tmp_path):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        write_image(tmp_path / "o.png", np.full((3, 3, 3), values))
    assert not (tmp_path / "o.png").exists()


@pytest.mark.reliability("clear_error")
@pytest.mark.parametrize("suffix", [".gif", ".pdf", ".xyz"])
def test_restore_refuses_an_output_format_before_running(suffix, network, tmp_path):
    image = write_image(tmp_path / "in.png", np.zeros((16, 16, 3)))
    expect_clear_error(["restore", image, "--checkpoint", network, "--out", tmp_path / f"o{suffix}"], f"unknown file extension: {suffix}")


@pytest.mark.reliability("clear_error")
def test_restore_turns_an_allocator_failure_into_one_line(network, tmp_path, monkeypatch):
    import sparsesel.training.losses as losses

    def out_of_memory(*_args, **_kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried to allocate 74088185856 bytes")

    monkeypatch.setattr(losses, "predict", out_of_memory)
    image = write_image(tmp_path / "in.png", np.zeros((16, 16, 3)))
    expect_clear_error(["restore", image, "--checkpoint", network, "--out", tmp_path / "o.png"], "not enough memory to run csattn",
                       "16x16", "in.png")


@pytest.mark.reliability("clear_error")
def test_restore_names_the_checkpoint_when_its_output_is_not_finite(tmp_path):
    """Weights just under the load-time limit can still overflow float32: the output check names the file."""
    model = zoo.build_net("csattn", "small").eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(9e5)
    network = zoo.save_net(model, tmp_path / "loud.pt", net="csattn")
    image = write_image(tmp_path / "in.png", np.full((16, 16, 3), 0.5))
    expect_clear_error(["restore", image, "--checkpoint", network, "--out", tmp_path / "o.png"], "loud.pt", "NaN or infinite")


# ------------------------------------------------------------------ numpy images handed to UHDformer.restore
@pytest.mark.reliability("right_result")
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "bool"])
def test_uhdformer_restore_scales_integer_numpy_images_by_their_type(dtype):
    from sparsesel.nets import UHDformer, UHDformerConfig

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = UHDformer(UHDformerConfig(width=8, number_block=1, unit_num=1, num_heads=2, match_factor=2, ffn_expansion_factor=2)).eval()
    top = {"uint8": 255, "uint16": 65535, "bool": 1}[dtype]
    pixels = RNG.integers(0, top + 1, (16, 16, 3)).astype(dtype)
    as_float = pixels.astype(np.float64) / top
    np.testing.assert_allclose(model.restore(pixels), model.restore(as_float.astype(np.float32)), atol=1e-6)


@pytest.mark.reliability("clear_error")
def test_uhdformer_restore_refuses_signed_integer_numpy_images():
    from sparsesel.nets import UHDformer, UHDformerConfig

    model = UHDformer(UHDformerConfig(width=8, number_block=1, unit_num=1, num_heads=2, match_factor=2, ffn_expansion_factor=2)).eval()
    with pytest.raises(TypeError, match="float, unsigned-integer or boolean numpy image, got dtype int32"):
        model.restore(np.zeros((8, 8, 3), np.int32))


@pytest.mark.reliability("right_result")
def test_attribute_on_a_network_keeps_an_exif_rotated_image_upright(network, tmp_path):
    """An image-to-image model reads the image at its own size: the size of the turned image, not the stored one."""
    pixels = RNG.integers(0, 256, (12, 20, 3)).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "rot.png", exif=_exif(6))
    run = run_cli(["attribute", "--model", network, "--image", tmp_path / "rot.png", "--k", "3", "--solver", "gradient",
                   "--out", tmp_path / "run"])
    assert run.status == 0, run.err
    record = json.loads((tmp_path / "run" / "attribution.json").read_text())
    assert np.asarray(record["attribution"]).shape == (20, 12)
