"""Opening user images safely: classify what is wrong, refuse bombs, and produce correct RGB.

One place decides what an image *is*:
- `read_header` opens lazily (no pixel decode) and says width, height and format, or raises
  ImageError with one of the REASONS below.
- `decode` forces a real decode (optionally at reduced size through JPEG draft, DCT-domain
  scaling), because `Image.verify()` passes truncated JPEGs.
- `to_rgb` turns every mode into correct RGB: EXIF orientation applied, transparency composited
  on a fill colour, CMYK through Pillow's Adobe-aware conversion, 16-bit scaled (not clipped).
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from typing import Union

import numpy as np
import simplejpeg
from PIL import Image, ImageOps, UnidentifiedImageError

from ml.errors import ImageError

# Reasons an image cannot be used (the verification report and resize both use these words).
MISSING = "missing"
EMPTY = "empty"
NOT_AN_IMAGE = "not an image"
TRUNCATED = "truncated"
BOMB = "decompression bomb"
UNSUPPORTED = "unsupported"
CHANGED = "changed since last seen"
REASONS = (MISSING, EMPTY, NOT_AN_IMAGE, TRUNCATED, BOMB, UNSUPPORTED, CHANGED)

# Refuse anything over 100 megapixels before decoding (Pillow only warns below 2x its limit).
DEFAULT_MAX_PIXELS = 100_000_000

Source = Union[str, os.PathLike, bytes]

# A plain JPEG: no EXIF block (which may carry an orientation), YCbCr or grayscale. Its size
# and pixels come from simplejpeg (libjpeg-turbo, the decoder Pillow uses) without Pillow's
# Python-level header parsing; anything else goes through Pillow.
JPEG_SOI = b"\xff\xd8"
EXIF_MARK = b"Exif\x00\x00"          # an APP1 EXIF block may carry an orientation
EXIF_SEARCH_BYTES = 1 << 16          # APP segments come first and are at most 64 KiB each
SIMPLE_COLORSPACES = ("YCbCr", "Gray")


def plain_jpeg_size(data: bytes | bytearray | memoryview) -> tuple[int, int] | None:
    """(width, height) of a plain JPEG within the pixel limit, from its first bytes (the
    header, not the whole file, is enough); None when Pillow must decide (not a JPEG, an EXIF
    block, another colour space, a header simplejpeg refuses or longer than `data`)."""
    if data[:2] != JPEG_SOI or bytes(data[:EXIF_SEARCH_BYTES]).find(EXIF_MARK) >= 0:
        return None
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    if colorspace not in SIMPLE_COLORSPACES or not 0 < width * height <= DEFAULT_MAX_PIXELS:
        return None
    return width, height


@dataclass(frozen=True)
class ImageHeader:
    width: int
    height: int
    format: str
    mode: str
    n_frames: int = 1


def _name(source: Source, name: str | None) -> str:
    if name:
        return name
    return "<bytes>" if isinstance(source, (bytes, bytearray, memoryview)) else str(source)


def open_image(source: Source, *, name: str | None = None,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open lazily (header only) and refuse bombs before any pixel is decoded.

    Raises ImageError(path, reason) with reason in REASONS for missing, empty, non-image,
    unsupported and decompression-bomb inputs.
    """
    label = _name(source, name)
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageError(label, EMPTY, "0 bytes")
        fp: object = io.BytesIO(bytes(source))
    else:
        try:
            size = os.stat(source).st_size
        except FileNotFoundError:
            raise ImageError(label, MISSING, "no such file") from None
        except OSError as exc:
            raise ImageError(label, UNSUPPORTED, f"cannot stat: {exc.strerror}") from None
        if size == 0:
            raise ImageError(label, EMPTY, "0 bytes")
        fp = os.fspath(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(fp)
    except Image.DecompressionBombError as exc:
        raise ImageError(label, BOMB, str(exc)) from None
    except UnidentifiedImageError:
        raise ImageError(label, NOT_AN_IMAGE, "Pillow cannot identify the file format") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(label, UNSUPPORTED, str(exc)) from None
    w, h = img.size
    if w * h > max_pixels:
        img.close()
        raise ImageError(label, BOMB,
                         f"{w}x{h} = {w * h} pixels exceeds the limit of {max_pixels}; "
                         "raise max_pixels if this image is genuine")
    if w == 0 or h == 0:
        img.close()
        raise ImageError(label, NOT_AN_IMAGE, f"zero-sized image {w}x{h}")
    return img


def read_header(source: Source, *, name: str | None = None,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageHeader:
    """Width, height, format and mode without decoding pixels (EXIF orientation applied to size)."""
    img = open_image(source, name=name, max_pixels=max_pixels)
    try:
        w, h = img.size
        if _exif_orientation(img) in (5, 6, 7, 8):
            w, h = h, w
        return ImageHeader(w, h, img.format or "", img.mode, getattr(img, "n_frames", 1))
    finally:
        img.close()


def _exif_orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(0x0112, 1) or 1)
    except Exception:  # a broken EXIF block must not make an image unusable
        return 1


DRAFT_MIN_SHORT_SIDE = 16


def decode(source: Source, *, name: str | None = None, draft_size: tuple[int, int] | None = None,
           max_pixels: int = DEFAULT_MAX_PIXELS, draft_longest_side: int | None = None) -> Image.Image:
    """Fully decode an image (first frame), optionally at reduced size via JPEG draft.

    `draft_size` asks the JPEG decoder for the smallest DCT scale (1/1, 1/2, 1/4, 1/8) whose
    result is still at least that large, so the decode does a fraction of the work. Truncated
    or otherwise undecodable data raises ImageError(TRUNCATED / UNSUPPORTED).
    """
    label = _name(source, name)
    img = open_image(source, name=label, max_pixels=max_pixels)
    if draft_longest_side is not None and draft_size is None:
        # the smallest DCT scale whose longer side is still at least draft_longest_side and
        # whose shorter side keeps DRAFT_MIN_SHORT_SIDE pixels (a 300 x 40 banner stays 10 high)
        w, h = img.size
        longest = max(w, h, 1)
        draft_size = (max(min(w, DRAFT_MIN_SHORT_SIDE), w * draft_longest_side // longest),
                      max(min(h, DRAFT_MIN_SHORT_SIDE), h * draft_longest_side // longest))
    try:
        if draft_size is not None and img.format == "JPEG":
            # draft works in stored orientation; rotation by 90 swaps the axes
            dw, dh = draft_size
            if _exif_orientation(img) in (5, 6, 7, 8):
                dw, dh = dh, dw
            img.draft(img.mode if img.mode in ("RGB", "L") else None, (dw, dh))
        img.load()
    except Image.DecompressionBombError as exc:
        img.close()
        raise ImageError(label, BOMB, str(exc)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        img.close()
        text = str(exc)
        reason = TRUNCATED if ("truncated" in text.lower() or "premature" in text.lower()
                               or isinstance(exc, EOFError) or "broken data stream" in text.lower()
                               or "incomplete" in text.lower()) else UNSUPPORTED
        raise ImageError(label, reason, text) from None
    return img


def _scale_16bit(img: Image.Image) -> Image.Image:
    """Map a 16/32-bit single-channel image to 8-bit L by scaling its nominal range (not clipping)."""
    arr = np.asarray(img)
    if img.mode.startswith("I;16") or arr.dtype == np.uint16:
        out = (arr.astype(np.uint32) + 128) // 257
    elif img.mode == "F":
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        if 0.0 <= lo and hi <= 1.0:
            out = np.round(arr * 255.0)
        else:
            out = np.round((arr - lo) / max(hi - lo, 1e-12) * 255.0)
    else:  # mode I (32-bit signed): PNG 16-bit often loads as I with values 0..65535
        hi = int(arr.max()) if arr.size else 0
        out = (arr.astype(np.int64) + 128) // 257 if hi <= 65535 else arr.astype(np.float64) / hi * 255
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), "L")


def to_rgb(img: Image.Image, fill: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Correct RGB from any mode: EXIF orientation applied, alpha composited over `fill`,
    palettes with a transparent index handled, CMYK converted, 16-bit scaled."""
    if _exif_orientation(img) != 1:   # exif_transpose copies the whole image even when upright
        img = ImageOps.exif_transpose(img) or img
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _scale_16bit(img).convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*fill, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "L" and "transparency" in img.info:
        return to_rgb(img.convert("RGBA"), fill)
    return img.convert("RGB")


def load_rgb(source: Source, *, name: str | None = None, draft_size: tuple[int, int] | None = None,
             fill: tuple[int, int, int] = (255, 255, 255),
             max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """decode() then to_rgb(): the one call training and resizing use to read a user's image."""
    img = decode(source, name=name, draft_size=draft_size, max_pixels=max_pixels)
    try:
        return to_rgb(img, fill)
    except (OSError, ValueError) as exc:
        raise ImageError(_name(source, name), UNSUPPORTED, str(exc)) from None
