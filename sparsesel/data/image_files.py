"""Image files in and out: every common pixel format read as float RGB in ``[0, 1]``, sizes checked first.

Reading (:func:`read_image`)
----------------------------
The header is read first (Pillow opens files lazily) and an image with more than ``max_pixels``
pixels (default :data:`DEFAULT_MAX_PIXELS` = 8192 x 8192 = 67,108,864, i.e. 768 MiB as float32
RGB) is refused before anything is decoded; Pillow's own decompression-bomb guard gives the same
error. Then each pixel format is scaled to ``[0, 1]`` as it means:

==================================  ==========================================================
file pixels (Pillow mode)           read as
==================================  ==========================================================
1-bit (``1``)                       0 or 1
8-bit grey, RGB (``L``, ``RGB``)    value / 255
palette (``P``, ``PA``)             the palette colour / 255
16-bit grey (``I;16``, ``I;16B``)   value / 65535 (PNG, TIFF; also PGM, which Pillow rescales
                                    from its maxval to 16 bits)
CMYK (8-bit)                        R = (1 - C)(1 - K), G = (1 - M)(1 - K), B = (1 - Y)(1 - K),
                                    each ink / 255
YCbCr, HSV (8-bit)                  Pillow's conversion to RGB, / 255
integer TIFF of 8 to 32 bits,       value / (2**bits - 1) for unsigned samples (bits: the
grey or RGB (via ``tifffile``)      file's BitsPerSample, e.g. 12); signed samples / (2**(bits-1) - 1),
                                    and negative values are refused
float TIFF (16, 32 or 64-bit,       as stored; NaN, infinite values and values outside
grey or RGB)                        [0, 1] are refused with the range found (rescale such
                                    an image first: the networks read [0, 1])
16-bit colour PNG                   Pillow decodes 8 bits per channel (the high byte), so
                                    v / 65535 comes back as (v >> 8) / 255, within 1/257
==================================  ==========================================================

Grey images are repeated into three equal channels. **Alpha is dropped**: the colour channels
are returned as stored (not composited on any background), for ``LA``, ``RGBA``, ``PA`` and
palette images with a transparent entry alike. The EXIF orientation (all eight values) is
applied, so a photo comes back the way a viewer shows it. Only the first frame of a multi-frame
file is read.

Writing (:func:`write_image`)
-----------------------------
Files hold 8 bits per channel: values are rounded to the nearest of 256 levels, the only loss.
Values outside ``[0, 1]`` by more than half a level, NaN and infinities are refused rather than
clipped. PNG, TIFF, BMP, PPM and WebP (written lossless) keep those levels exactly; JPEG is lossy
by nature (quality 95) and is written only when the suffix asks for it.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from sparsesel.atomic import write_atomic

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "WRITE_FORMATS",
    "check_max_pixels",
    "exif_orient",
    "image_size",
    "output_format",
    "read_image",
    "write_image",
]

#: Default pixel limit of :func:`read_image`: 8192 x 8192 (768 MiB as float32 RGB).
DEFAULT_MAX_PIXELS = 8192 * 8192

#: File suffixes :func:`write_image` writes, and their Pillow formats.
WRITE_FORMATS: dict[str, str] = {
    ".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP", ".ppm": "PPM", ".pnm": "PPM",
    ".webp": "WEBP", ".jpg": "JPEG", ".jpeg": "JPEG",
}

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_PILLOW_LIMIT_LOCK = threading.Lock()
_SIXTEEN_BIT_GREY = ("I;16", "I;16L", "I;16B", "I;16N")


class _Unsupported(Exception):
    """A pixel layout this reader does not convert (the message says which)."""


# ---------------------------------------------------------------------------
# limits and paths
# ---------------------------------------------------------------------------


def check_max_pixels(max_pixels: int | None) -> int | None:
    """``max_pixels`` if it is ``None`` (no limit) or a positive integer; otherwise ``TypeError``/``ValueError``."""
    if max_pixels is None:
        return None
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)):
        raise TypeError(f"max_pixels must be a positive integer or None, got {max_pixels!r}")
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive integer (--max-pixels), got {max_pixels}")
    return int(max_pixels)


def _check_path(path: Path, shown: str) -> None:
    if path.is_dir():
        raise ValueError(f"image {shown!r} is a directory, not an image file")
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {shown}")


def _check_size(shown: str, width: int, height: int, max_pixels: int | None) -> None:
    if width < 1 or height < 1:
        raise ValueError(f"image {shown!r} has no pixels ({width}x{height})")
    if max_pixels is not None and width * height > max_pixels:
        _refuse_size(shown, f"{width}x{height} = {width * height:,} pixels", width * height, max_pixels)


def _refuse_size(shown: str, size: str, pixels: int, max_pixels: int | None) -> None:
    raise ValueError(
        f"image {shown!r} is {size}, more than the limit of {max_pixels:,} (it would take {pixels * 12 / 2**30:.1f} GiB "
        "as float32 RGB); refused before decoding. Raise the limit with --max-pixels (max_pixels= in the API) if the "
        "machine has the memory"
    )


@contextlib.contextmanager
def _pillow_bomb_limit(max_pixels: int | None) -> Iterator[None]:
    """Let Pillow's decompression-bomb guard allow what ``max_pixels`` allows; its warning is silenced
    (our own limit, checked on the header, is the one that counts)."""
    pillow = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        if pillow is None or (max_pixels is not None and max_pixels <= pillow):
            yield
            return
        with _PILLOW_LIMIT_LOCK:
            Image.MAX_IMAGE_PIXELS = None
            try:
                yield
            finally:
                Image.MAX_IMAGE_PIXELS = pillow


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _unreadable(shown: str, detail: str) -> ValueError:
    return ValueError(f"cannot read image {shown!r}: it could not be read as an image ({detail})")


def _is_tiff(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) in _TIFF_MAGIC


# ---------------------------------------------------------------------------
# scaling and orientation
# ---------------------------------------------------------------------------


def _to_unit_float(samples: np.ndarray, full_scale: float | None, shown: str) -> np.ndarray:
    """``(H, W, 3)`` float32: integer samples / ``full_scale``, or floats as stored (checked)."""
    if full_scale is None:
        values = np.asarray(samples, dtype=np.float64)
        finite = np.isfinite(values)
        if not finite.all():
            nan = int(np.isnan(values).sum())
            raise ValueError(
                f"image {shown!r} holds {nan} NaN and {int((~finite).sum()) - nan} infinite value(s); refused"
            )
        low, high = float(values.min()), float(values.max())
        if low < 0.0 or high > 1.0:
            raise ValueError(
                f"image {shown!r} holds floating-point values in [{low:.6g}, {high:.6g}], outside [0, 1]; refused "
                "rather than clipped (rescale it to [0, 1] first)"
            )
        unit = values.astype(np.float32)
    elif full_scale <= 65535:  # exact in float32: one correctly rounded division
        unit = samples.astype(np.float32) / np.float32(full_scale)
    else:
        unit = (samples.astype(np.float64) / full_scale).astype(np.float32)
    if unit.ndim == 2:
        unit = np.repeat(unit[:, :, None], 3, axis=2)
    return np.ascontiguousarray(unit)


def exif_orient(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turn an ``(H, W, ...)`` array stored with EXIF ``orientation`` (1..8) the way it is meant to be seen.

    1 keeps it; 2 mirrors left-right; 3 turns it 180 degrees; 4 mirrors top-bottom; 5 transposes
    (mirror about the main diagonal); 6 turns it 90 degrees clockwise; 7 transverses (mirror about
    the other diagonal); 8 turns it 90 degrees counter-clockwise. Other values keep it.
    """
    turns = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: np.swapaxes(a, 0, 1),
        6: lambda a: np.rot90(a, k=-1, axes=(0, 1)),
        7: lambda a: np.swapaxes(a[::-1, ::-1], 0, 1),
        8: lambda a: np.rot90(a, k=1, axes=(0, 1)),
    }
    turn = turns.get(int(orientation))
    return image if turn is None else np.ascontiguousarray(turn(image))


def _exif_orientation(handle: Image.Image) -> int:
    """The EXIF orientation tag, 1 when absent, unreadable or not one of 1..8."""
    try:
        if handle.format == "TIFF":
            value = handle.tag_v2.get(ExifTags.Base.Orientation, 1)
        else:
            value = handle.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # noqa: BLE001 - a corrupt EXIF block does not make the pixels unreadable
        return 1
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else 1


# ---------------------------------------------------------------------------
# Pillow
# ---------------------------------------------------------------------------


def _pillow_samples(handle: Image.Image) -> tuple[np.ndarray, float | None]:
    """The decoded samples, ``(H, W)`` grey or ``(H, W, 3)`` colour, and the value that means 1
    (``None``: floats, as stored)."""
    mode = handle.mode
    if mode == "1":
        return np.asarray(handle).astype(np.uint8), 1
    if mode in ("L", "LA"):
        return np.asarray(handle.getchannel(0)), 255
    if mode in _SIXTEEN_BIT_GREY:
        return np.asarray(handle).astype(np.uint16), 65535
    if mode == "I":
        if handle.format == "PPM":  # Pillow rescales a PGM's maxval (> 255) to 16 bits
            return np.asarray(handle), 65535
        raise _Unsupported(f"32-bit integer pixels from a {handle.format} file")
    if mode == "F":
        return np.asarray(handle), None
    if mode in ("RGB", "RGBA", "RGBX"):
        return np.asarray(handle)[..., :3], 255
    if mode == "CMYK":
        inks = np.asarray(handle).astype(np.float64) / 255.0
        return (1.0 - inks[..., :3]) * (1.0 - inks[..., 3:4]), None
    if mode in ("P", "PA"):
        return np.asarray(handle.convert("RGBA"))[..., :3], 255
    try:
        return np.asarray(handle.convert("RGB")), 255
    except (ValueError, OSError):
        raise _Unsupported(f"pixel mode {mode!r}") from None


def _tifffile_reads_better(handle: Image.Image) -> bool:
    """Whether this TIFF goes to tifffile: Pillow would read it with less range or precision than it
    holds (signed or 32-bit integers, 16-bit colour, 16-bit 'white is zero'), or it carries an
    orientation tag (recent Pillow turns such TIFFs while decoding, scrambling orientations 5 to 8)."""
    if handle.format != "TIFF":
        return False
    if handle.mode == "I":
        return True
    tags = getattr(handle, "tag_v2", {})
    if tags.get(ExifTags.Base.Orientation, 1) != 1:
        return True
    bits = tags.get(258, 8)
    sample_format = tags.get(339, 1)
    bits = max(bits) if isinstance(bits, tuple) else bits
    sample_format = sample_format[0] if isinstance(sample_format, tuple) else sample_format
    if sample_format == 2 and handle.mode != "F":  # signed integers
        return True
    if tags.get(262) == 0 and bits > 8:  # 16-bit 'white is zero': Pillow does not invert it
        return True
    return bool(bits > 8 and handle.mode not in (*_SIXTEEN_BIT_GREY, "F"))


def _read_with_pillow(path: Path, shown: str, max_pixels: int | None) -> np.ndarray | None:
    """The image, or ``None`` for a TIFF that tifffile must read."""
    try:
        with _pillow_bomb_limit(max_pixels):
            handle = Image.open(path)
    except Image.DecompressionBombError as exc:  # only when max_pixels is below Pillow's guard
        size = re.search(r"\((\d+) pixels\)", str(exc))
        if size is None:  # pragma: no cover - Pillow's wording changed
            raise ValueError(f"image {shown!r} is too large to decode safely ({exc}); the limit is {max_pixels:,} pixels") from None
        _refuse_size(shown, f"{int(size.group(1)):,} pixels", int(size.group(1)), max_pixels)
    except UnidentifiedImageError:
        if _is_tiff(path):
            return None
        raise _unreadable(shown, "not a format Pillow recognises; is it an image file?") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises OSError, ValueError, SyntaxError, ... on bad headers
        raise _unreadable(shown, _first_line(exc)) from None
    with handle:
        _check_size(shown, *handle.size, max_pixels)
        if _tifffile_reads_better(handle):
            return None
        try:
            with _pillow_bomb_limit(max_pixels):
                handle.load()
                samples, full_scale = _pillow_samples(handle)
            # read after decoding: a PNG may keep its eXIf chunk after the pixels; recent Pillow turns a
            # TIFF by its orientation tag while decoding and then deletes the tag (older Pillow keeps it)
            orientation = _exif_orientation(handle)
        except _Unsupported as exc:
            raise ValueError(f"cannot read image {shown!r}: {exc} is not supported") from None
        except MemoryError:
            raise ValueError(f"not enough memory to decode image {shown!r} ({handle.size[0]}x{handle.size[1]})") from None
        except Exception as exc:  # noqa: BLE001 - truncated or corrupt data: OSError, ValueError, EOFError, zlib.error, ...
            raise _unreadable(shown, _first_line(exc)) from None
    return exif_orient(_to_unit_float(samples, full_scale, shown), orientation)


# ---------------------------------------------------------------------------
# tifffile (TIFFs Pillow cannot hold: 16-bit colour, signed or 32-bit integers, float colour, float64)
# ---------------------------------------------------------------------------


def _tiff_samples(
    data: np.ndarray, axes: str, photometric: int, bits: int, colormap: np.ndarray | None, shown: str
) -> tuple[np.ndarray, float | None]:
    if axes.startswith("S"):
        data, axes = np.moveaxis(data, 0, -1), axes[1:] + "S"
    if axes not in ("YX", "YXS"):
        raise ValueError(f"cannot read image {shown!r}: TIFF axes {axes!r} are not a single 2-D image")
    if data.ndim == 2:
        data = data[:, :, None]
    if photometric == 3 and colormap is not None and data.dtype.kind == "u":  # PALETTE: 16-bit colour map entries
        return np.moveaxis(colormap, 0, -1)[data[..., 0]].astype(np.float64) / 65535.0, None
    if photometric == 5 and data.shape[2] >= 4 and data.dtype == np.uint8:  # SEPARATED: CMYK inks
        inks = data[..., :4].astype(np.float64) / 255.0
        return (1.0 - inks[..., :3]) * (1.0 - inks[..., 3:4]), None
    if photometric in (0, 1):  # MINISWHITE, MINISBLACK: the first sample is grey, extra ones (alpha) dropped
        samples = data[..., 0]
    elif photometric == 2 and data.shape[2] >= 3:  # RGB, extra samples (alpha) dropped
        samples = data[..., :3]
    else:
        raise ValueError(f"cannot read image {shown!r}: TIFF photometric interpretation {photometric} with "
                         f"{data.shape[2]} {data.dtype} sample(s) is not supported")
    if samples.dtype.kind == "f":
        if photometric == 0:
            raise ValueError(f"cannot read image {shown!r}: floating-point 'white is zero' TIFFs are not supported")
        return samples, None
    if samples.dtype.kind == "b":
        samples = samples.astype(np.uint8)
        bits = 1
    if samples.dtype.kind == "i":
        if samples.min() < 0:
            raise ValueError(f"image {shown!r} holds negative values (signed {bits}-bit samples, minimum "
                             f"{int(samples.min())}); refused: [0, 1] cannot represent them")
        full_scale = float(2 ** (bits - 1) - 1)
    elif samples.dtype.kind == "u":
        full_scale = float(2**bits - 1)
    else:
        raise ValueError(f"cannot read image {shown!r}: TIFF samples of type {samples.dtype} are not supported")
    if photometric == 0:
        samples = full_scale - samples.astype(np.float64)
    return samples, full_scale


def _read_with_tifffile(path: Path, shown: str, max_pixels: int | None) -> np.ndarray:
    try:
        import tifffile
    except ImportError:  # pragma: no cover - scikit-image depends on tifffile
        raise ValueError(f"cannot read image {shown!r}: this TIFF needs the tifffile package") from None
    try:
        tif = tifffile.TiffFile(path)
    except Exception as exc:  # noqa: BLE001
        raise _unreadable(shown, _first_line(exc)) from None
    with tif:
        try:
            page = tif.pages[0]
            width, height = int(page.imagewidth), int(page.imagelength)
            photometric, bits, axes = int(page.photometric), int(page.bitspersample), str(page.axes)
            colormap = None if page.colormap is None else np.asarray(page.colormap)
            orientation = page.tags.get(274)
            orientation = int(orientation.value) if orientation is not None else 1
        except Exception as exc:  # noqa: BLE001
            raise _unreadable(shown, _first_line(exc)) from None
        _check_size(shown, width, height, max_pixels)
        try:
            data = page.asarray()
        except MemoryError:
            raise ValueError(f"not enough memory to decode image {shown!r} ({width}x{height})") from None
        except Exception as exc:  # noqa: BLE001 - truncated strips, unknown compression, ...
            raise _unreadable(shown, _first_line(exc)) from None
    samples, full_scale = _tiff_samples(np.asarray(data), axes, photometric, bits, colormap, shown)
    return exif_orient(_to_unit_float(samples, full_scale, shown), orientation)


# ---------------------------------------------------------------------------
# the public functions
# ---------------------------------------------------------------------------


def read_image(path: str | os.PathLike, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as float32 RGB in ``[0, 1]`` (see the module docstring for every format).

    Parameters
    ----------
    path : path-like
        PNG, JPEG, TIFF, BMP, WebP, GIF, PPM/PGM ... (whatever Pillow opens; TIFFs beyond Pillow's
        range through ``tifffile``).
    max_pixels : int or None
        Refuse images with more pixels (width x height), checked on the header before decoding;
        default :data:`DEFAULT_MAX_PIXELS` (8192 x 8192); ``None``: no limit.

    Returns
    -------
    numpy.ndarray
        Shape ``(H, W, 3)``, float32, values in ``[0, 1]``, EXIF orientation applied, alpha dropped.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        A directory, a file that is not an image, a truncated or corrupt image, an image over the
        pixel limit, an unsupported pixel layout, or float pixels that are NaN, infinite or
        outside ``[0, 1]``; the message names the file.
    """
    shown = os.fspath(path)
    path = Path(path)
    max_pixels = check_max_pixels(max_pixels)
    _check_path(path, shown)
    image = _read_with_pillow(path, shown, max_pixels)
    return image if image is not None else _read_with_tifffile(path, shown, max_pixels)


def image_size(path: str | os.PathLike, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """``(W, H)`` of the array :func:`read_image` returns (EXIF orientation applied), from the file's header.

    The same checks as :func:`read_image` before decoding (missing file, folder, not an image, over
    ``max_pixels``); a PNG whose EXIF block follows its pixels is decoded to find it.

    Raises
    ------
    FileNotFoundError, ValueError
        As :func:`read_image`, naming the file.
    """
    shown = os.fspath(path)
    path = Path(path)
    max_pixels = check_max_pixels(max_pixels)
    _check_path(path, shown)
    try:
        with _pillow_bomb_limit(max_pixels):
            handle = Image.open(path)
    except Image.DecompressionBombError:
        read_image(path, max_pixels=max_pixels)  # raises the size error in our words
        raise  # pragma: no cover
    except Exception:  # noqa: BLE001 - not an image for Pillow: tifffile, or read_image's error
        return _oriented_size(read_image(path, max_pixels=max_pixels))
    with handle:
        width, height = handle.size
        _check_size(shown, width, height, max_pixels)
        if _tifffile_reads_better(handle):
            return _oriented_size(read_image(path, max_pixels=max_pixels))
        try:
            with _pillow_bomb_limit(max_pixels):
                orientation = _exif_orientation(handle)
        except Exception:  # noqa: BLE001
            orientation = 1
    return (height, width) if orientation >= 5 else (width, height)


def _oriented_size(image: np.ndarray) -> tuple[int, int]:
    return image.shape[1], image.shape[0]


def _eight_bit(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image, dtype=np.float64)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3)):
        raise ValueError(f"image must have shape (H, W), (H, W, 1) or (H, W, 3), got {array.shape}")
    if array.size == 0:
        raise ValueError(f"image has no pixels (shape {array.shape})")
    if not np.all(np.isfinite(array)):
        raise ValueError("image contains NaN or infinite values")
    low, high = float(array.min()), float(array.max())
    half_level = 0.5 / 255.0
    if low < -half_level or high > 1.0 + half_level:
        raise ValueError(f"image values must lie in [0, 1], got [{low:.6g}, {high:.6g}]; refused rather than clipped "
                         "(clip or rescale them first)")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    return np.clip(np.round(array * 255.0), 0, 255).astype(np.uint8)


def output_format(path: str | os.PathLike) -> str:
    """The Pillow format :func:`write_image` writes ``path`` in (by its suffix; none means PNG).

    Raises
    ------
    ValueError
        A suffix not in :data:`WRITE_FORMATS`.
    """
    suffix = Path(path).suffix.lower() or ".png"
    if suffix not in WRITE_FORMATS:
        raise ValueError(f"unknown file extension: {suffix} (image outputs: {', '.join(sorted(WRITE_FORMATS))})")
    return WRITE_FORMATS[suffix]


def write_image(path: str | os.PathLike, image: np.ndarray, *, force: bool = False) -> Path:
    """Write ``image`` as an 8-bit file, atomically (see the module docstring on what is kept).

    Parameters
    ----------
    path : path-like
        The suffix picks the format: one of :data:`WRITE_FORMATS` (``.png``, ``.tif``/``.tiff``,
        ``.bmp``, ``.ppm``/``.pnm``, ``.webp`` lossless; ``.jpg``/``.jpeg`` lossy, quality 95).
    image : numpy.ndarray
        ``(H, W, 3)``, ``(H, W)`` or ``(H, W, 1)`` values in ``[0, 1]``; rounded to 8 bits per channel.
    force : bool
        Replace an existing file; otherwise ``FileExistsError``.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ValueError
        An unknown suffix, a bad shape, NaN/inf, or values outside ``[0, 1]`` by more than half
        of an 8-bit level (refused, never clipped silently).
    """
    path = Path(path)
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass force=True (--force) to overwrite it")
    image_format = output_format(path)
    pixels = _eight_bit(image)
    options = {"WEBP": {"lossless": True, "quality": 100}, "JPEG": {"quality": 95}}.get(image_format, {})
    return write_atomic(path, lambda stream: Image.fromarray(pixels).save(stream, format=image_format, **options), force=force)

