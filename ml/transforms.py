"""Face-training transforms with occlusion masks (seed 002), built on torchvision.

Occlusion transforms take a PIL image (non-RGB images are converted to RGB) and return an
(image, mask) pair; the rest of the pipeline carries the pair:

- MedicalMaskOcclusion pastes a surgical-mask picture over nose and mouth, placed from five-point
  landmarks, and returns a pixel mask (L-mode PIL image, 255 visible / 0 occluded).
- SyntheticOcclusionMask pastes random rectangles and returns a feature-map mask (numpy float32
  [fm, fm], 1 visible / 0 occluded).
- RandomHorizontalFlipWithMask flips the image and its mask together (geometric transforms must
  move the mask with the image); OcclusionMaskWrapper applies a PHOTOMETRIC image-only transform
  (Normalize, ColorJitter) to the image of a pair and refuses geometric ones.
- ToTensorWithMask makes tensors: a 0..255 mask (PIL L, integer arrays) is divided by 255, a
  0..1 float mask is kept as it is (seed 002 divided both, which scaled feature-map masks to
  0..0.004).

Randomness: every random transform takes `seed`. seed=None (the default for training) draws from
Python's `random` module, which the DataLoader seeds differently in every worker. An integer seed
gives a private generator, for reproducible tests; inside a DataLoader worker it is re-seeded from
(seed, the worker's torch seed, RANK) so workers and ranks never repeat each other's stream.
torchvision-backed RandomErasing draws from torch's generator (torch.manual_seed).
"""

from __future__ import annotations

import functools
import math
import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as F
from PIL import Image, ImageDraw

from ml.errors import ConfigError, ImageError
from ml.face_landmarks import ARCFACE_SHIFT_X, CASIA_LANDMARKS_112, Point

# The reference landmarks the occlusions are placed on: nose tip, left and right mouth corner of
# the five-point template (ml/face_landmarks.py), as seed 002 gives them for 112x112 images.
CASIA_REFERENCE_POINTS: tuple[Point, Point, Point] = CASIA_LANDMARKS_112[2:]
# The same points in insightface/ArcFace 112x112 crops (centred). Use these for faces aligned by
# insightface's norm_crop.
ARCFACE_REFERENCE_POINTS: tuple[Point, Point, Point] = tuple(
    (x + ARCFACE_SHIFT_X, y) for x, y in CASIA_REFERENCE_POINTS)
REFERENCE_SIZE = (112, 112)  # (width, height) of the frame the reference points are given in

# Mask geometry, in reference-frame pixels (seed 002's proportions).
MASK_WIDTH_PER_MOUTH_WIDTH = 4.0     # picture width incl. ear loops: 4 x mouth width x scale
MASK_HEIGHT_PER_NOSE_TO_MOUTH = 4.0  # picture height: 4 x (mouth y - nose y) x scale
MASK_TOP_ABOVE_NOSE = 10.0           # the picture's top edge sits this far above the nose tip

MASK_PICTURE_SIZE = (200, 120)
DEFAULT_MASK_PATH = Path(__file__).resolve().parent / "assets_data" / "medical_mask.png"

VISIBLE, OCCLUDED = 255, 0
UINT8_MODES = ("RGB", "L", "RGBA")   # PIL modes whose pixels map straight onto uint8 tensors
WARP_SUPERSAMPLE = 2  # the picture is warped at this multiple of image resolution, then box-filtered

GEOMETRIC_TRANSFORMS: tuple[type, ...] = (
    T.RandomHorizontalFlip, T.RandomVerticalFlip, T.RandomResizedCrop, T.RandomCrop, T.CenterCrop,
    T.Resize, T.Pad, T.RandomRotation, T.RandomAffine, T.RandomPerspective, T.FiveCrop,
    T.TenCrop, T.ElasticTransform)

PIL_TO_INTERPOLATION = {
    Image.Resampling.NEAREST: F.InterpolationMode.NEAREST,
    Image.Resampling.BILINEAR: F.InterpolationMode.BILINEAR,
    Image.Resampling.BICUBIC: F.InterpolationMode.BICUBIC,
    Image.Resampling.BOX: F.InterpolationMode.BOX,
    Image.Resampling.HAMMING: F.InterpolationMode.HAMMING,
    Image.Resampling.LANCZOS: F.InterpolationMode.LANCZOS,
}


# ---------------------------------------------------------------------------------------------
# Randomness and argument checks


class WorkerRandom:
    """The source of a transform's random numbers: `random` itself, or a per-process generator.

    seed=None: the `random` module (the DataLoader seeds it per worker). An integer seed: a
    `random.Random` created lazily in each process, keyed by (seed, DataLoader worker seed, RANK),
    so a transform pickled or forked into workers does not hand every worker the same stream.
    """

    def __init__(self, seed: int | None = None):
        self.seed = seed
        self._pid: int | None = None
        self._generator: random.Random | None = None

    def get(self) -> Any:
        """A `random.Random`-like object (the `random` module when unseeded)."""
        if self.seed is None:
            return random
        pid = os.getpid()
        if pid != self._pid:
            self._generator = random.Random(self.stream_key())
            self._pid = pid
        return self._generator

    def stream_key(self) -> str:
        worker = torch.utils.data.get_worker_info()
        worker_seed = "main" if worker is None else str(worker.seed)
        return f"{self.seed}:{worker_seed}:{os.environ.get('RANK', '0')}"


def seed_offset(seed: int | None, offset: int) -> int | None:
    """A distinct seed for the `offset`-th component of a seeded pipeline (None stays None)."""
    return None if seed is None else seed + offset


def check_probability(value: float, name: str, who: str) -> float:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{who}: {name}={value}; a probability must be in [0, 1]")
    return float(value)


def check_fraction_range(low: float, high: float, names: str, who: str) -> tuple[float, float]:
    if not 0.0 < low <= high <= 1.0:
        raise ConfigError(f"{who}: {names}=({low}, {high}); need 0 < min <= max <= 1 "
                          "(fractions of the image side)")
    return float(low), float(high)


def check_pil(image: Any, who: str) -> Image.Image:
    if not isinstance(image, Image.Image):
        raise ConfigError(f"{who}: expects a PIL image, got {type(image).__name__}; "
                          "put it before ToTensorWithMask in the pipeline")
    return image if image.mode == "RGB" else image.convert("RGB")


def as_interpolation(interpolation: F.InterpolationMode | int) -> F.InterpolationMode:
    """torchvision's InterpolationMode for a PIL resampling constant (or the mode itself)."""
    if isinstance(interpolation, F.InterpolationMode):
        return interpolation
    try:
        return PIL_TO_INTERPOLATION[Image.Resampling(interpolation)]
    except (ValueError, KeyError):
        raise ConfigError(f"interpolation={interpolation!r} is not a PIL resampling filter or "
                          "torchvision InterpolationMode") from None


def all_visible(size: tuple[int, int]) -> Image.Image:
    """A pixel mask (L, 255 everywhere) for an image of `size` (width, height)."""
    return Image.new("L", size, VISIBLE)


# ---------------------------------------------------------------------------------------------
# The project's mask picture


def make_mask_picture(size: tuple[int, int] = MASK_PICTURE_SIZE, supersample: int = 4) -> Image.Image:
    """Draw the project's surgical-mask picture: RGBA, light-blue pleated body and ear loops on a
    transparent background. Deterministic (drawn supersampled, then box-filtered).

    Layout, in fractions of the picture: the body spans x 0.2..0.8, its top edge runs from y 0.01
    at the centre (nose bridge) down to 0.13 at the sides, its bottom edge from 1.0 at the
    centre (under the chin) up to 0.86; the ear loops fill x 0.02..0.2 and 0.8..0.98.
    """
    width, height = size[0] * supersample, size[1] * supersample
    canvas = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    pen = ImageDraw.Draw(canvas)

    def xy(u: float, v: float) -> tuple[float, float]:
        return u * width, v * height

    def curve(v_centre: float, v_drop: float, u0: float = 0.2, u1: float = 0.8, n: int = 64):
        us = np.linspace(u0, u1, n)
        return [xy(u, v_centre + v_drop * ((u - 0.5) / 0.3) ** 2) for u in us]

    loop_width = max(1, round(0.016 * width))
    loop_colour = (238, 240, 242, 255)
    pen.arc([xy(0.02, 0.10), xy(0.38, 0.80)], 90, 270, fill=loop_colour, width=loop_width)
    pen.arc([xy(0.62, 0.10), xy(0.98, 0.80)], -90, 90, fill=loop_colour, width=loop_width)

    body = curve(0.01, 0.12) + curve(1.0, -0.14)[::-1]
    pen.polygon(body, fill=(150, 198, 230, 255))
    pen.line(body + body[:1], fill=(112, 160, 200, 255), width=max(1, round(0.012 * height)))
    for v in (0.36, 0.54, 0.72):
        pen.line(curve(v, 0.06, 0.215, 0.785), fill=(116, 165, 204, 255), width=round(0.022 * height))
        pen.line(curve(v + 0.03, 0.06, 0.215, 0.785), fill=(178, 216, 240, 255),
                 width=round(0.012 * height))
    pen.line(curve(0.05, 0.12, 0.38, 0.62, 16), fill=(214, 232, 246, 255), width=round(0.025 * height))
    return canvas.resize(size, Image.Resampling.BOX)


def write_mask_picture(path: str | os.PathLike = DEFAULT_MASK_PATH) -> Path:
    """Save make_mask_picture() as a PNG at `path` (atomically) and return the path."""
    from ml.atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        make_mask_picture().save(tmp, format="PNG", optimize=True)
    return path


@functools.lru_cache(maxsize=8)
def load_mask_picture(path: str | None) -> Image.Image:
    """The mask picture as RGBA, read once per process and path (cached).

    None means the project's picture: DEFAULT_MASK_PATH, or drawn in memory when that file is
    not there (an installed wheel without package data). A picture without an alpha channel (a
    JPEG like seed 002's maskPic.jpg) gets one: near-white pixels become transparent.
    """
    if path is None:
        if not DEFAULT_MASK_PATH.is_file():
            return make_mask_picture()
        path = str(DEFAULT_MASK_PATH)
    if not Path(path).is_file():
        raise ImageError(path, "mask picture not found",
                         "give the path of an RGBA PNG, or leave mask_path unset for the built-in mask")
    try:
        with Image.open(path) as opened:
            picture = opened.convert("RGBA") if opened.mode != "RGBA" else opened.copy()
            has_alpha = "A" in opened.getbands() or "transparency" in opened.info
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(path, "mask picture is not a readable image", str(exc)) from None
    if not has_alpha:
        rgb = np.asarray(picture)[..., :3]
        alpha = np.where((rgb > 240).all(axis=-1), 0, 255).astype(np.uint8)
        picture.putalpha(Image.fromarray(alpha, "L"))
    return picture


# ---------------------------------------------------------------------------------------------
# Occlusions that return (image, mask)


class MedicalMaskOcclusion:
    """Paste a surgical-mask picture over nose and mouth; return (image, pixel mask).

    With probability `prob` the five-point reference landmarks (nose tip, mouth corners; given in
    a `reference_size` frame and scaled to the image) are jittered by +-`landmark_jitter` px, the
    picture is sized 4 x mouth width by 4 x nose-to-mouth height (times a scale drawn from
    `scale_range`), rotated by up to +-`max_rotation` degrees, shifted by +-`max_shift` px, and
    placed centred on the nose with its top edge MASK_TOP_ABOVE_NOSE px above the nose tip: it
    covers nose, mouth and chin and leaves the eyes free. The mask is an L-mode image of the
    image's size, 255 where the face is visible and 0 where the picture is (alpha >= 128,
    ear loops included); all 255 when the occlusion is not applied. The input is never modified.

    Speed: the picture is read once per process (load_mask_picture) and pre-scaled once per
    image size; each application is one affine warp of the picture's bounding box (nearest, at
    2x, box-filtered down), one alpha paste and one threshold of the alpha.
    """

    def __init__(
        self,
        mask_path: str | os.PathLike | None = None,
        prob: float = 0.5,
        ref_points: Sequence[Point] = CASIA_REFERENCE_POINTS,
        reference_size: tuple[int, int] = REFERENCE_SIZE,
        landmark_jitter: float = 3.0,
        max_shift: float = 5.0,
        scale_range: tuple[float, float] = (0.95, 1.10),
        max_rotation: float = 7.0,
        seed: int | None = None,
    ):
        who = "MedicalMaskOcclusion"
        self.prob = check_probability(prob, "prob", who)
        self.ref_points = np.asarray(ref_points, dtype=np.float64)
        if self.ref_points.shape != (3, 2):
            raise ConfigError(f"{who}: ref_points={ref_points}; give 3 (x, y) points: nose tip, "
                              "left mouth corner, right mouth corner")
        if self.ref_points[1:, 1].mean() <= self.ref_points[0, 1]:
            raise ConfigError(f"{who}: ref_points {ref_points}: the mouth corners must lie below "
                              "the nose tip (larger y)")
        if not 0 < scale_range[0] <= scale_range[1]:
            raise ConfigError(f"{who}: scale_range={scale_range}; need 0 < min <= max")
        self.reference_size = reference_size
        self.landmark_jitter = float(landmark_jitter)
        self.max_shift = float(max_shift)
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.max_rotation = float(max_rotation)
        self.mask_path = None if mask_path is None else str(mask_path)
        self.picture = load_mask_picture(self.mask_path)
        self._scaled_pictures: dict[tuple[int, int], Image.Image] = {}
        self.random = WorkerRandom(seed)

    def nominal_picture_size(self) -> tuple[float, float]:
        """Picture (width, height) in reference pixels for the unjittered landmarks at scale 1."""
        nose, left, right = self.ref_points
        mouth_width = float(np.hypot(*(right - left)))
        return (MASK_WIDTH_PER_MOUTH_WIDTH * mouth_width,
                MASK_HEIGHT_PER_NOSE_TO_MOUTH * ((left[1] + right[1]) / 2 - nose[1]))

    def scaled_picture(self, image_size: tuple[int, int]) -> Image.Image:
        """The picture resized (antialiased) to WARP_SUPERSAMPLE x its nominal size on an image of
        `image_size`, as premultiplied RGBa, so that the per-call warp only scales by ~0.7..1.4
        and the box filter that brings it back to image scale blends edges correctly."""
        picture = self._scaled_pictures.get(image_size)
        if picture is None:
            sx, sy = self.frame_scale(image_size)
            width, height = self.nominal_picture_size()
            size = (max(2, round(width * sx * WARP_SUPERSAMPLE)),
                    max(2, round(height * sy * WARP_SUPERSAMPLE)))
            picture = self.picture.resize(size, Image.Resampling.LANCZOS).convert("RGBa")
            if len(self._scaled_pictures) >= 8:
                self._scaled_pictures.clear()
            self._scaled_pictures[image_size] = picture
        return picture

    def frame_scale(self, image_size: tuple[int, int]) -> tuple[float, float]:
        return image_size[0] / self.reference_size[0], image_size[1] / self.reference_size[1]

    def __call__(self, image: Image.Image) -> tuple[Image.Image, Image.Image]:
        image = check_pil(image, "MedicalMaskOcclusion")
        rng = self.random.get()
        if rng.random() >= self.prob:
            return image, all_visible(image.size)
        return self.occlude(image, rng)

    def occlude(self, image: Image.Image, rng: Any) -> tuple[Image.Image, Image.Image]:
        """Apply the occlusion with parameters drawn from `rng` (always; no coin flip)."""
        jitter = self.landmark_jitter
        nose, left, right = (p + [rng.uniform(-jitter, jitter), rng.uniform(-jitter, jitter)]
                             for p in self.ref_points)
        shift_x = rng.uniform(-self.max_shift, self.max_shift)
        shift_y = rng.uniform(-self.max_shift, self.max_shift)
        scale = rng.uniform(*self.scale_range)
        angle = math.radians(rng.uniform(-self.max_rotation, self.max_rotation))

        sx, sy = self.frame_scale(image.size)
        mouth_y = (left[1] + right[1]) / 2
        width = MASK_WIDTH_PER_MOUTH_WIDTH * float(np.hypot(*(right - left))) * scale * sx
        height = MASK_HEIGHT_PER_NOSE_TO_MOUTH * max(mouth_y - nose[1], 1.0) * scale * sy
        centre = ((nose[0] + shift_x) * sx,
                  (nose[1] - MASK_TOP_ABOVE_NOSE + shift_y) * sy + height / 2)
        return self.paste(image, centre, width, height, angle)

    def paste(self, image: Image.Image, centre: Point, width: float, height: float,
              angle: float) -> tuple[Image.Image, Image.Image]:
        """Paste the picture scaled to width x height, rotated by `angle` radians (counter-
        clockwise) about its centre placed at `centre`; return (occluded copy, pixel mask)."""
        picture = self.scaled_picture(image.size)
        cos, sin = math.cos(angle), math.sin(angle)
        half_w, half_h = width / 2, height / 2
        # Bounding box of the rotated picture, clipped to the image.
        reach_x = abs(half_w * cos) + abs(half_h * sin)
        reach_y = abs(half_w * sin) + abs(half_h * cos)
        x0, y0 = max(0, math.floor(centre[0] - reach_x)), max(0, math.floor(centre[1] - reach_y))
        x1 = min(image.width, math.ceil(centre[0] + reach_x))
        y1 = min(image.height, math.ceil(centre[1] + reach_y))
        if x1 <= x0 or y1 <= y0:
            return image, all_visible(image.size)
        # Inverse map: supersampled box pixel -> image (+ box origin) -> un-rotate about centre
        # -> picture. Nearest sampling at WARP_SUPERSAMPLE x, then a box filter down: as smooth
        # as a bilinear warp and ~2.5x faster in Pillow.
        kx, ky = picture.width / width, picture.height / height
        ox, oy = x0 - centre[0], y0 - centre[1]
        step = 1.0 / WARP_SUPERSAMPLE
        coefficients = (kx * cos * step, -kx * sin * step,
                        kx * (ox * cos - oy * sin) + picture.width / 2,
                        ky * sin * step, ky * cos * step,
                        ky * (ox * sin + oy * cos) + picture.height / 2)
        box = ((x1 - x0) * WARP_SUPERSAMPLE, (y1 - y0) * WARP_SUPERSAMPLE)
        patch = picture.transform(box, Image.Transform.AFFINE, coefficients, Image.Resampling.NEAREST)
        patch = patch.reduce(WARP_SUPERSAMPLE).convert("RGBA")
        occluded = image.copy()
        occluded.paste(patch, (x0, y0), patch)
        mask = all_visible(image.size)
        occluding = patch.getchannel("A").convert("1", dither=Image.Dither.NONE)  # alpha >= 128
        mask.paste(OCCLUDED, (x0, y0), occluding)
        return occluded, mask


class SyntheticOcclusionMask:
    """Paste 1..max_patches random rectangles; return (image, feature-map mask).

    Each patch has a side of min_size..max_size of the shorter image side and an aspect ratio of
    0.7..1.4, and is black or (half the time) a random colour. The mask is a numpy float32 array
    [feature_map_size, feature_map_size], 1.0 visible / 0.0 occluded, where a cell is occluded
    when patches cover at least half of its pixels (seed 002 truncated patch corners to cells,
    which dropped small patches entirely). All ones when not applied.
    """

    def __init__(self, prob: float = 0.5, min_size: float = 0.1, max_size: float = 0.4,
                 max_patches: int = 3, feature_map_size: int = 7, seed: int | None = None):
        who = "SyntheticOcclusionMask"
        self.prob = check_probability(prob, "prob", who)
        self.min_size, self.max_size = check_fraction_range(min_size, max_size,
                                                            "(min_size, max_size)", who)
        if max_patches < 1 or feature_map_size < 1:
            raise ConfigError(f"{who}: max_patches={max_patches}, feature_map_size="
                              f"{feature_map_size}; both must be at least 1")
        self.max_patches = int(max_patches)
        self.feature_map_size = int(feature_map_size)
        self.random = WorkerRandom(seed)

    def __call__(self, image: Image.Image) -> tuple[Image.Image, np.ndarray]:
        image = check_pil(image, "SyntheticOcclusionMask")
        rng = self.random.get()
        size = self.feature_map_size
        if rng.random() >= self.prob:
            return image, np.ones((size, size), np.float32)
        occluded = image.copy()
        covered = np.zeros((image.height, image.width), dtype=bool)
        side = min(image.size)
        for _ in range(rng.randint(1, self.max_patches)):
            patch = side * rng.uniform(self.min_size, self.max_size)
            aspect = math.sqrt(rng.uniform(0.7, 1.4))
            w = min(image.width, max(1, int(patch * aspect)))
            h = min(image.height, max(1, int(patch / aspect)))
            x0, y0 = rng.randint(0, image.width - w), rng.randint(0, image.height - h)
            colour = tuple(rng.randrange(256) for _ in range(3)) if rng.random() < 0.5 else (0, 0, 0)
            occluded.paste(colour, (x0, y0, x0 + w, y0 + h))
            covered[y0:y0 + h, x0:x0 + w] = True
        return occluded, (cell_coverage(covered, size) < 0.5).astype(np.float32)


def cell_coverage(covered: np.ndarray, cells: int) -> np.ndarray:
    """Fraction of True pixels in each cell of a cells x cells grid laid over a 2-D bool array."""
    integral = np.zeros((covered.shape[0] + 1, covered.shape[1] + 1), dtype=np.int64)
    integral[1:, 1:] = covered.cumsum(0).cumsum(1)
    rows = np.linspace(0, covered.shape[0], cells + 1).round().astype(int)
    cols = np.linspace(0, covered.shape[1], cells + 1).round().astype(int)
    r0, r1, c0, c1 = rows[:-1, None], rows[1:, None], cols[None, :-1], cols[None, 1:]
    total = integral[r1, c1] - integral[r0, c1] - integral[r1, c0] + integral[r0, c0]
    area = (r1 - r0) * (c1 - c0)
    return np.divide(total, area, out=np.zeros(total.shape), where=area > 0)


# ---------------------------------------------------------------------------------------------
# Carrying (image, mask) pairs through a pipeline


def mentions_geometric(transform: Any) -> str | None:
    """Name of a geometric transform inside `transform` (Compose etc. searched), else None."""
    if isinstance(transform, GEOMETRIC_TRANSFORMS + (RectScale, RandomSizedRectCrop,
                                                     RandomHorizontalFlipWithMask)):
        return type(transform).__name__
    for inner in getattr(transform, "transforms", None) or ():
        found = mentions_geometric(inner)
        if found:
            return found
    return None


class OcclusionMaskWrapper:
    """Apply an image-only PHOTOMETRIC transform to the image of an (image, mask) pair.

    Plain images pass straight to the transform. Geometric transforms (flip, crop, resize,
    rotate, ...) are refused, because the mask would stay where the pixels were: use
    RandomHorizontalFlipWithMask, or run geometric transforms before the occlusion transform.
    """

    def __init__(self, transform: Callable[[Any], Any]):
        geometric = mentions_geometric(transform)
        if geometric:
            raise ConfigError(f"OcclusionMaskWrapper wraps photometric transforms only; "
                              f"{geometric} moves pixels and the mask would no longer match. Use "
                              "RandomHorizontalFlipWithMask, or apply it before the occlusion.")
        self.transform = transform

    def __call__(self, data: Any) -> Any:
        if isinstance(data, tuple):
            image, mask = data
            return self.transform(image), mask
        return self.transform(data)

    def __repr__(self) -> str:
        return f"OcclusionMaskWrapper({self.transform!r})"


def hflip_mask(mask: Any) -> Any:
    """Mirror a mask left-right: PIL image, numpy array or tensor (last axis is x)."""
    if isinstance(mask, Image.Image):
        return mask.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if isinstance(mask, torch.Tensor):
        return mask.flip(-1)
    return np.ascontiguousarray(np.asarray(mask)[..., ::-1])


class RandomHorizontalFlipWithMask:
    """With probability p, mirror the image and (for a pair) its mask together.

    Works on plain images too, so it can stand anywhere in a pipeline; the image may be a PIL
    image or a tensor (torchvision's hflip), the mask a PIL image, numpy array or tensor.
    """

    def __init__(self, p: float = 0.5, seed: int | None = None):
        self.p = check_probability(p, "p", "RandomHorizontalFlipWithMask")
        self.random = WorkerRandom(seed)

    def __call__(self, data: Any) -> Any:
        if self.random.get().random() >= self.p:
            return data
        if isinstance(data, tuple):
            image, mask = data
            return F.hflip(image), hflip_mask(mask)
        return F.hflip(data)


def pil_to_uint8_tensor(image: Image.Image) -> torch.Tensor:
    """An 8-bit PIL image (RGB, L, RGBA) as a uint8 [C, H, W] tensor: one copy of the pixels,
    returned as a channel-first view of them (torch.stack and .contiguous() lay it out)."""
    pixels = torch.from_numpy(np.array(image))
    if pixels.ndim == 2:
        pixels = pixels.unsqueeze(-1)
    return pixels.permute(2, 0, 1)


def image_to_tensor(image: Any) -> torch.Tensor:
    """torchvision's to_tensor ([C, H, W] float32 in 0..1), with a faster path for 8-bit PIL."""
    if isinstance(image, torch.Tensor):
        return image
    if isinstance(image, Image.Image) and image.mode in UINT8_MODES:
        pixels = pil_to_uint8_tensor(image)
        return torch.empty(pixels.shape, dtype=torch.float32).copy_(pixels).div_(255.0)
    return F.to_tensor(image)


def mask_to_tensor(mask: Any) -> torch.Tensor:
    """A mask as float32 [1, H, W] in 0..1.

    8-bit masks (PIL L, integer arrays and tensors, 255 visible) are divided by 255; bool masks
    (PIL mode 1) become 0/1; float masks (already 0..1, e.g. SyntheticOcclusionMask's feature map)
    are kept as they are.
    """
    if isinstance(mask, Image.Image):
        mask = np.array(mask)
    tensor = mask if isinstance(mask, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(mask))
    if tensor.dtype == torch.bool:
        tensor = tensor.to(torch.float32)
    elif tensor.is_floating_point():
        tensor = tensor.to(torch.float32)
    else:
        tensor = tensor.to(torch.float32).div_(255.0)
    return tensor.unsqueeze(0) if tensor.ndim == 2 else tensor


class ToTensorWithMask:
    """(image, mask) -> (image [C, H, W] 0..1, mask [1, h, w] 0..1); a plain image -> its tensor.

    See mask_to_tensor for how each kind of mask is scaled.
    """

    def __call__(self, data: Any) -> Any:
        if isinstance(data, tuple):
            image, mask = data
            return image_to_tensor(image), mask_to_tensor(mask)
        return image_to_tensor(data)

    def __repr__(self) -> str:
        return "ToTensorWithMask()"


def mask_to_uint8_tensor(mask: Any) -> torch.Tensor:
    """A pixel mask (PIL L or 1, uint8 or bool array) as uint8 [1, H, W], 255 visible / 0
    occluded; a float mask (0..1, e.g. a feature-map mask) goes through mask_to_tensor."""
    if isinstance(mask, Image.Image):
        mask = np.array(mask)
    if isinstance(mask, np.ndarray) and mask.dtype in (np.uint8, np.bool_):
        tensor = torch.from_numpy(mask.astype(np.uint8) * 255 if mask.dtype == np.bool_ else mask)
        return tensor.unsqueeze(0) if tensor.ndim == 2 else tensor
    return mask_to_tensor(mask)


class ToUint8TensorWithMask:
    """(image, mask) -> (image uint8 [C, H, W], mask uint8 [1, H, W] 255 visible / 0 occluded);
    a plain image -> its uint8 tensor.

    The cheap end of a pipeline: no float conversion and no normalisation per item. Collate with
    Uint8Collate and normalise on the device with BatchNormalizer(mean, std), or collate with
    NormalizeCollate(mean, std) (see ml.collate): either gives what ToTensorWithMask followed by
    Normalize would have, in one batched operation. Float (feature-map) masks are
    passed on as float32 tensors, as ToTensorWithMask gives them.
    """

    def __call__(self, data: Any) -> Any:
        if isinstance(data, tuple):
            image, mask = data
            return self.image(image), mask_to_uint8_tensor(mask)
        return self.image(data)

    @staticmethod
    def image(image: Any) -> torch.Tensor:
        if isinstance(image, Image.Image) and image.mode in UINT8_MODES:
            return pil_to_uint8_tensor(image)
        return F.pil_to_tensor(check_pil(image, "ToUint8TensorWithMask"))

    def __repr__(self) -> str:
        return "ToUint8TensorWithMask()"


class Normalize(T.Normalize):
    """torchvision's Normalize, with the mean and std tensors built once instead of per call.

    Same results as T.Normalize; on [C, H, W] float tensors it is one fused sub_/div_ pair
    (about 5x faster per 112x112 image), other inputs go to torchvision.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], inplace: bool = False):
        super().__init__(mean, std, inplace)
        self._mean = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self._std = torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1)
        if (self._std == 0).any():
            raise ConfigError(f"Normalize: std={list(std)} contains 0; every std must be non-zero")

    def forward(self, tensor: torch.Tensor) -> torch.Tensor:
        if tensor.dtype != torch.float32 or tensor.ndim != 3 or tensor.shape[0] != len(self._mean):
            return super().forward(tensor)
        if not self.inplace:
            tensor = tensor.clone()
        return tensor.sub_(self._mean).div_(self._std)


# ---------------------------------------------------------------------------------------------
# Image-only transforms (seed 002's "other transforms")


class RandomOcclusion:
    """Fill one random square (side min_size..max_size of the shorter side) with `fill`.

    Image only (no mask); returns a new image.
    """

    def __init__(self, min_size: float = 0.2, max_size: float = 1.0,
                 fill: tuple[int, int, int] = (0, 0, 0), seed: int | None = None):
        self.min_size, self.max_size = check_fraction_range(min_size, max_size,
                                                            "(min_size, max_size)", "RandomOcclusion")
        self.fill = tuple(fill)
        self.random = WorkerRandom(seed)

    def __call__(self, image: Image.Image) -> Image.Image:
        image = check_pil(image, "RandomOcclusion")
        rng = self.random.get()
        shorter = min(image.size)
        side = min(shorter, max(1, round(shorter * rng.uniform(self.min_size, self.max_size))))
        x0, y0 = rng.randint(0, image.width - side), rng.randint(0, image.height - side)
        occluded = image.copy()
        occluded.paste(self.fill, (x0, y0, x0 + side, y0 + side))
        return occluded


class RectScale:
    """Resize to exactly height x width (torchvision resize, antialiased); same-size images are
    returned as they are."""

    def __init__(self, height: int, width: int,
                 interpolation: F.InterpolationMode | int = Image.Resampling.BILINEAR):
        if height < 1 or width < 1:
            raise ConfigError(f"RectScale: height={height}, width={width}; both must be >= 1")
        self.height, self.width = int(height), int(width)
        self.interpolation = as_interpolation(interpolation)

    def __call__(self, image: Any) -> Any:
        if F.get_image_size(image) == [self.width, self.height]:
            return image
        return F.resize(image, [self.height, self.width], self.interpolation, antialias=True)


class RandomSizedRectCrop:
    """Crop a random rectangle of the target aspect ratio and resize it to height x width.

    The crop is crop_factor..1 times the largest rectangle of the target's aspect ratio that fits
    in the image (so faces are never stretched), at a random position (torchvision resized_crop).
    """

    def __init__(self, height: int, width: int, crop_factor: float = 0.8,
                 interpolation: F.InterpolationMode | int = Image.Resampling.BILINEAR,
                 seed: int | None = None):
        if height < 1 or width < 1:
            raise ConfigError(f"RandomSizedRectCrop: height={height}, width={width}; both must be >= 1")
        check_fraction_range(crop_factor, 1.0, "(crop_factor, 1)", "RandomSizedRectCrop")
        self.height, self.width, self.crop_factor = int(height), int(width), float(crop_factor)
        self.interpolation = as_interpolation(interpolation)
        self.random = WorkerRandom(seed)

    def __call__(self, image: Any) -> Any:
        rng = self.random.get()
        image_w, image_h = F.get_image_size(image)
        target_aspect = self.width / self.height
        largest_w = min(image_w, image_h * target_aspect)
        factor = rng.uniform(self.crop_factor, 1.0)
        crop_w = min(image_w, max(1, round(largest_w * factor)))
        crop_h = min(image_h, max(1, round(largest_w * factor / target_aspect)))
        top, left = rng.randint(0, image_h - crop_h), rng.randint(0, image_w - crop_w)
        return F.resized_crop(image, top, left, crop_h, crop_w, [self.height, self.width],
                              self.interpolation, antialias=True)


class RandomErasing(T.RandomErasing):
    """torchvision's RandomErasing with seed 002's parameter names (Zhong et al.'s originals).

    EPSILON: probability of erasing; sl, sh: erased area as a fraction of the image; r1: lowest
    aspect ratio (the range is r1..1/r1); mean: per-channel fill value. Works on tensors (after
    ToTensorWithMask), image only: the occlusion mask does not record the erased area. Draws from
    torch's random generator.
    """

    def __init__(self, EPSILON: float = 0.5, sl: float = 0.02, sh: float = 0.4, r1: float = 0.3,
                 mean: Sequence[float] = (0.485, 0.456, 0.406)):
        check_probability(EPSILON, "EPSILON", "RandomErasing")
        if not 0 <= sl <= sh <= 1 or not 0 < r1 <= 1:
            raise ConfigError(f"RandomErasing: sl={sl}, sh={sh}, r1={r1}; need 0 <= sl <= sh <= 1 "
                              "and 0 < r1 <= 1")
        super().__init__(p=EPSILON, scale=(sl, sh), ratio=(r1, 1 / r1), value=[float(m) for m in mean])
        self.EPSILON, self.sl, self.sh, self.r1, self.mean = EPSILON, sl, sh, r1, tuple(mean)


# ---------------------------------------------------------------------------------------------
# The default face augmentation


def face_train_transform(
    mask_prob: float = 0.5,
    flip_prob: float = 0.5,
    mean: Sequence[float] = (0.5, 0.5, 0.5),
    std: Sequence[float] = (0.5, 0.5, 0.5),
    mask_path: str | os.PathLike | None = None,
    ref_points: Sequence[Point] = CASIA_REFERENCE_POINTS,
    seed: int | None = None,
    uint8_output: bool = False,
) -> T.Compose:
    """The default face-training transform: PIL image -> (image tensor, mask tensor).

    MedicalMaskOcclusion(mask_prob), then a horizontal flip of image and mask together, then
    ToTensorWithMask and Normalize(mean, std) on the image only. The image comes out [3, H, W]
    normalised, the mask [1, H, W] with 1 visible / 0 occluded (all ones when no mask was
    pasted). The occlusion runs before the flip so that it is placed on the landmarks the image
    was aligned to, whatever the flip does afterwards.

    uint8_output=True ends with ToUint8TensorWithMask instead (uint8 image, mask 255 / 0, no
    normalisation): give the DataLoader collate_fn=Uint8Collate() and normalise each batch on
    its device with BatchNormalizer(mean, std) (ml.collate; what ml/train/face.py does), or
    collate_fn=NormalizeCollate(mean, std) for float batches from the DataLoader. Either gives
    the default's values, several times faster (see docs/benchmarks.md, Loader).
    """
    occlusion = MedicalMaskOcclusion(mask_path=mask_path, prob=mask_prob, ref_points=ref_points,
                                     seed=seed_offset(seed, 0))
    flip = RandomHorizontalFlipWithMask(flip_prob, seed=seed_offset(seed, 1))
    if uint8_output:     # flipping the uint8 tensors is cheaper than flipping PIL images
        return T.Compose([occlusion, ToUint8TensorWithMask(), flip])
    return T.Compose([occlusion, flip, ToTensorWithMask(),
                      OcclusionMaskWrapper(Normalize(mean, std, inplace=True))])
