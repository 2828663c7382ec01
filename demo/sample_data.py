"""The bundled sample data: a seeded, deterministic generator of the four demo sources.

`python -m demo.sample_data --out data/sample` writes, under the output folder:

- faces/      a seed-000 hybrid set: images/id_XXXX/NN.jpg drawn faces, labels.h5, PLANTED.json
- pairs/      seed-004 before/after pairs: NNNN_before.jpg / NNNN_after.jpg of varied sizes
- sequences/  sequences.h5 in the solo-learn layout (/<class>/<object>_<frame>.jpg, JPEG bytes)
- inat/       iNaturalist-2017-style train2017.json / val2017.json beside train_val_images/

Every set is built in a temporary sibling folder and renamed into place; its `.complete`
marker (JSON: set, seed, parameters) is written last, and a set whose marker records the same
seed is kept unless `force`. The same seed gives the same bytes on every run:
each identity, pair, object and image draws from its own SeedSequence, so the worker count
never changes the output.

The faces are built to be *learnable but not trivial*: each identity has fixed features (face
shape and width, skin, hair colour and style, eye spacing/size/colour, brows, nose, mouth,
glasses, beard, ears, a mole) and each image varies pose (a few px, +-5 degrees), expression,
blinks, background, clothes, lighting and noise, so raw pixels are a weak identity cue.
"""

from __future__ import annotations

import argparse
import colorsys
import hashlib
import io
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import h5py
import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from demo.synthetic_photos import photo_like
from ml.atomic import atomic_dir
from ml.errors import ConfigError, DatasetError
from ml.face_landmarks import CASIA_LANDMARKS_112, LANDMARK_NAMES
from ml.imageio import EMPTY, NOT_AN_IMAGE, TRUNCATED
from ml.process_pool import pool_context
from ml.progress import Progress

log = logging.getLogger(__name__)

SETS = ("faces", "pairs", "sequences", "inat")
COMPLETE_MARKER = ".complete"
PLANTED_FILE = "PLANTED.json"
JPEG_QUALITY = 90
SUPERSAMPLE = 3  # faces, sequences and iNat motifs are drawn this many times larger, then box-filtered

# The five-point template (ml/face_landmarks.py: the occlusion transforms use the same points)
REFERENCE_112 = np.array(CASIA_LANDMARKS_112, np.float64)
FACE_UNIT = 250  # face geometry is written in the coordinates of a 250-px image
REFERENCE_250 = REFERENCE_112 * FACE_UNIT / 112

# Distinct tags so that the sets never share a random stream.
_FACES, _PAIRS, _SEQUENCES, _INAT = 0xFACE, 0x9A1B, 0x5E9, 0x1A7


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def _jpeg_bytes(img: Image.Image, quality: int = JPEG_QUALITY) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _colour(rgb: Iterable[float], alpha: int | None = None) -> tuple[int, ...]:
    values = [int(round(min(255.0, max(0.0, float(v))))) for v in rgb]
    return tuple(values + ([alpha] if alpha is not None else []))


def _mix(a: Sequence[float], b: Sequence[float], t: float) -> tuple[float, ...]:
    return tuple(float(x) * (1 - t) + float(y) * t for x, y in zip(a, b))


def _hsv(h: float, s: float, v: float) -> tuple[float, ...]:
    return tuple(255.0 * c for c in colorsys.hsv_to_rgb(h % 1.0, s, v))


# A set's generator version: a set built by an older one is rebuilt (its marker says which).
SET_VERSIONS = {"inat": 2}            # inat 2: plants duplicates and blurred / dark images


def _write_marker(folder: Path, name: str, seed: int, params: dict, counts: dict) -> None:
    doc = {"set": name, "seed": seed, "params": params, "counts": counts,
           "version": SET_VERSIONS.get(name, 1)}
    (folder / COMPLETE_MARKER).write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")


def _write_json(path: Path, doc: object) -> None:
    path.write_text(json.dumps(doc, indent=1) + "\n")


# --------------------------------------------------------------------------------------------
# Backgrounds and lighting (shared by faces and iNat)
# --------------------------------------------------------------------------------------------

def _smooth_noise(rng: np.random.Generator, width: int, height: int, cells: int) -> np.ndarray:
    """Smooth random field in [0, 1]: a coarse random grid upsampled bicubically."""
    grid = rng.random((cells, cells)).astype(np.float32)
    img = Image.fromarray((grid * 255).astype(np.uint8), "L").resize((width, height), Image.BICUBIC)
    return np.asarray(img, np.float32) / 255.0


def _background(rng: np.random.Generator, width: int, height: int,
                muted: bool = False) -> np.ndarray:
    """A float32 RGB background: flat, gradient, stripes, smooth blobs or checks, random colours."""
    sat_hi = 0.35 if muted else 0.9
    c1 = np.array(_hsv(rng.random(), rng.uniform(0.0, sat_hi), rng.uniform(0.15, 0.95)), np.float32)
    c2 = np.array(_hsv(rng.random(), rng.uniform(0.0, sat_hi), rng.uniform(0.15, 0.95)), np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    along = (xx * math.cos(angle) + yy * math.sin(angle)) / max(width, height)
    kind = rng.integers(0, 5)
    if kind == 0:
        t = np.zeros_like(xx)
    elif kind == 1:
        t = (along - along.min()) / max(1e-6, float(along.max() - along.min()))
    elif kind == 2:
        t = 0.5 + 0.5 * np.sin(along * rng.uniform(8, 40) + rng.uniform(0, 6.3))
    elif kind == 3:
        t = _smooth_noise(rng, width, height, int(rng.integers(3, 9)))
    else:
        cell = rng.uniform(12, 40)
        u = xx * math.cos(angle) - yy * math.sin(angle)
        v = xx * math.sin(angle) + yy * math.cos(angle)
        t = ((np.floor(u / cell) + np.floor(v / cell)) % 2).astype(np.float32)
    out = c1[None, None, :] * (1 - t[..., None]) + c2[None, None, :] * t[..., None]
    return out + rng.normal(0, rng.uniform(0, 6), (height, width, 3)).astype(np.float32)


def _light_and_noise(rng: np.random.Generator, img: Image.Image, gain: tuple[float, float],
                     slope: float, tint: float, noise: tuple[float, float]) -> Image.Image:
    """Apply a brightness gain, a linear lighting gradient, a colour tint and sensor noise."""
    arr = np.asarray(img, np.float32)
    height, width = arr.shape[:2]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    ramp = ((xx - width / 2) * math.cos(angle) + (yy - height / 2) * math.sin(angle)) / max(width, height)
    light = rng.uniform(*gain) * (1 + 2 * rng.uniform(0, slope) * ramp)
    colour = 1 + rng.uniform(-tint, tint, 3).astype(np.float32)
    arr = arr * light[..., None] * colour[None, None, :]
    arr += rng.normal(0, rng.uniform(*noise), arr.shape).astype(np.float32)
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "RGB")


# --------------------------------------------------------------------------------------------
# Faces (seed 000 hybrid layout)
# --------------------------------------------------------------------------------------------

SKIN_TONES = np.array([[255, 226, 200], [241, 196, 150], [224, 172, 120], [198, 140, 90],
                       [160, 105, 66], [110, 70, 45]], np.float64)
HAIR_COLOURS = np.array([[25, 22, 20], [70, 45, 30], [120, 80, 45], [165, 90, 45],
                         [215, 180, 110], [150, 150, 150], [235, 235, 230], [180, 50, 35]], np.float64)
IRIS_COLOURS = np.array([[85, 55, 30], [60, 110, 170], [70, 120, 70], [120, 125, 130],
                         [140, 110, 60]], np.float64)
HAIR_STYLES = ("bald", "short", "side_part", "fringe", "long", "curly", "bun", "mohawk")
BEARDS = ("none", "full", "goatee", "moustache")
EXPRESSIONS = ("neutral", "smile", "open")


@dataclass(frozen=True)
class FaceIdentity:
    """The features one identity keeps in every image (lengths in 250-px image units)."""

    skin: tuple[float, ...]
    face_half_width: float
    face_half_height: float
    face_centre_y: float
    squareness: float          # superellipse exponent: 2 = ellipse, larger = squarer jaw
    chin_taper: float          # 0 = wide chin, larger = pointed chin
    hair: tuple[float, ...]
    hair_style: str
    hairline: float            # hairline height as a fraction of the face's upper half
    hair_slant: float          # side parting: the hairline rises to one side
    eye_half_spacing: float
    eye_y: float
    eye_width: float
    eye_height: float
    iris: tuple[float, ...]
    brow_gap: float
    brow_thickness: float
    brow_tilt: float
    nose_top: float
    nose_width: float
    mouth_half_width: float
    lip_colour: tuple[float, ...]
    lip_thickness: float
    ear_size: float
    glasses: str               # none | round | square | sun
    glasses_colour: tuple[float, ...]
    beard: str
    mole: tuple[float, float] | None
    age: float
    texture_seed: int          # the hair strands' own random stream


def _sample_identity(rng: np.random.Generator) -> FaceIdentity:
    tone = rng.uniform(0, len(SKIN_TONES) - 1)
    low = int(tone)
    skin = _mix(SKIN_TONES[low], SKIN_TONES[min(low + 1, len(SKIN_TONES) - 1)], tone - low)
    skin = tuple(c * f for c, f in zip(skin, rng.uniform(0.94, 1.06, 3)))
    hair = tuple(HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] * rng.uniform(0.85, 1.15, 3))
    centre_y = rng.uniform(134, 142)
    half_height = max(rng.uniform(96, 112), 236 - centre_y)
    glasses = ("none", "round", "square", "sun")[rng.choice(4, p=[0.68, 0.13, 0.13, 0.06])]
    mole = (rng.uniform(-55, 55), rng.uniform(-60, 40)) if rng.random() < 0.4 else None
    return FaceIdentity(
        skin=skin, face_half_width=rng.uniform(64, 82), face_half_height=half_height,
        face_centre_y=centre_y, squareness=rng.uniform(2.0, 3.6), chin_taper=rng.uniform(0.0, 0.35),
        hair=hair, hair_style=HAIR_STYLES[rng.integers(len(HAIR_STYLES))],
        hairline=rng.uniform(0.45, 0.8), hair_slant=rng.choice([-1, 1]) * rng.uniform(5, 25),
        eye_half_spacing=rng.uniform(35, 44), eye_y=rng.uniform(111, 119),
        eye_width=rng.uniform(9, 14.5), eye_height=rng.uniform(0.4, 0.75),
        iris=tuple(IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))]),
        brow_gap=rng.uniform(12, 22), brow_thickness=rng.uniform(2.5, 9), brow_tilt=rng.uniform(-8, 8),
        nose_top=rng.uniform(118, 138), nose_width=rng.uniform(13, 30),
        mouth_half_width=rng.uniform(29, 36),
        lip_colour=_mix(skin, (150, 40, 50), rng.uniform(0.25, 0.6)),
        lip_thickness=rng.uniform(3, 8), ear_size=rng.uniform(0.8, 1.25),
        glasses=glasses, glasses_colour=_hsv(rng.random(), rng.uniform(0, 0.8), rng.uniform(0.05, 0.7)),
        beard=BEARDS[rng.choice(4, p=[0.64, 0.12, 0.12, 0.12])], mole=mole,
        age=float(np.float32(round(rng.uniform(18, 75), 1))), texture_seed=int(rng.integers(2**31)),
    )


def identity_landmarks(identity: FaceIdentity) -> np.ndarray:
    """The identity's five landmarks (LANDMARK_NAMES) in 250-px units, before per-image pose."""
    nose = REFERENCE_250[2]
    eye_mid_x = (REFERENCE_250[0, 0] + REFERENCE_250[1, 0]) / 2
    mouth_mid = (REFERENCE_250[3] + REFERENCE_250[4]) / 2
    d, m = identity.eye_half_spacing, identity.mouth_half_width
    return np.array([[eye_mid_x - d, identity.eye_y], [eye_mid_x + d, identity.eye_y],
                     [nose[0], nose[1]], [mouth_mid[0] - m, mouth_mid[1]],
                     [mouth_mid[0] + m, mouth_mid[1]]], np.float64)


class _Pen:
    """ImageDraw in 250-px face units on a supersampled canvas."""

    def __init__(self, img: Image.Image, unit: float):
        self.draw = ImageDraw.Draw(img)
        self.unit = unit

    def pts(self, points: Iterable[Sequence[float]]) -> list[tuple[float, float]]:
        return [(float(x) * self.unit, float(y) * self.unit) for x, y in points]

    def box(self, cx: float, cy: float, rx: float, ry: float) -> list[float]:
        u = self.unit
        return [(cx - rx) * u, (cy - ry) * u, (cx + rx) * u, (cy + ry) * u]

    def ellipse(self, cx, cy, rx, ry, fill=None, outline=None, width=0.0) -> None:
        self.draw.ellipse(self.box(cx, cy, rx, ry), fill=fill, outline=outline,
                          width=max(1, int(round(width * self.unit))) if outline else 0)

    def polygon(self, points, fill) -> None:
        self.draw.polygon(self.pts(points), fill=fill)

    def line(self, points, fill, width: float) -> None:
        self.draw.line(self.pts(points), fill=fill, width=max(1, int(round(width * self.unit))),
                       joint="curve")


def _face_outline(identity: FaceIdentity, scale: float = 1.0, n: int = 96) -> np.ndarray:
    """Points of the face contour: a superellipse whose lower half narrows towards the chin."""
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    e = 2.0 / identity.squareness
    x = np.sign(c) * np.abs(c) ** e * identity.face_half_width * scale
    y = np.sign(s) * np.abs(s) ** e * identity.face_half_height * scale
    x *= 1 - identity.chin_taper * np.clip(s, 0, None) ** 2
    return np.stack([x + REFERENCE_250[2, 0], y + identity.face_centre_y], axis=1)


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float, n: int = 24) -> np.ndarray:
    t = np.radians(np.linspace(start, end, n))
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _draw_hair_back(pen: _Pen, idt: FaceIdentity, colour) -> None:
    cx, top = REFERENCE_250[2, 0], idt.face_centre_y - idt.face_half_height
    a = idt.face_half_width
    if idt.hair_style == "long":
        pen.polygon([(cx - a * 1.22, top + 40), (cx - a * 1.3, 262), (cx + a * 1.3, 262),
                     (cx + a * 1.22, top + 40)], colour)
        pen.ellipse(cx, top + 45, a * 1.22, 55, fill=colour)
    elif idt.hair_style == "curly":
        for k in range(14):
            ang = math.radians(180 + k * 180 / 13)
            pen.ellipse(cx + a * 1.08 * math.cos(ang), idt.face_centre_y - 15 + 105 * math.sin(ang),
                        26, 26, fill=colour)
        pen.ellipse(cx, idt.face_centre_y - 30, a * 1.25, idt.face_half_height * 0.95, fill=colour)
    elif idt.hair_style == "bun":
        pen.ellipse(cx, top - 4, 26, 22, fill=colour)


def _hair_front_mask(idt: FaceIdentity, size: tuple[int, int], unit: float) -> Image.Image:
    """Mask of the hair over the head: the enlarged face contour above the hairline."""
    mask = Image.new("L", size, 0)
    pen = _Pen(mask, unit)
    cx, a = REFERENCE_250[2, 0], idt.face_half_width
    top = idt.face_centre_y - idt.face_half_height
    if idt.hair_style == "bald":
        return mask
    if idt.hair_style == "mohawk":
        pen.polygon([(cx - 14, top + 30), (cx - 9, top - 18), (cx + 9, top - 18), (cx + 14, top + 30)], 255)
        pen.ellipse(cx, top + 8, 14, 26, fill=255)
        return mask
    pen.polygon(_face_outline(idt, scale=1.08), 255)
    if idt.hair_style == "fringe":
        line_y, curve, slant = idt.eye_y - idt.brow_gap - 14, 18.0, 0.0
    else:
        line_y = idt.face_centre_y - idt.face_half_height * idt.hairline
        curve, slant = 45.0, idt.hair_slant if idt.hair_style == "side_part" else 0.0
    xs = np.linspace(cx - 2 * a, cx + 2 * a, 41)
    rel = (xs - cx) / a
    hairline = line_y + curve * np.clip(rel, -1.2, 1.2) ** 2 + slant * rel
    below = [(x, y) for x, y in zip(xs, hairline)] + [(cx + 2 * a, 300), (cx - 2 * a, 300)]
    pen.polygon(below, 0)
    return mask


def _draw_hair_front(layer: Image.Image, idt: FaceIdentity, unit: float) -> None:
    mask = _hair_front_mask(idt, layer.size, unit)
    hair = Image.new("RGBA", layer.size, _colour(idt.hair, 255))
    pen = _Pen(hair, unit)
    strand_rng = _rng(idt.texture_seed)
    shade = _colour(_mix(idt.hair, (0, 0, 0), 0.35), 255)
    cx, top = REFERENCE_250[2, 0], idt.face_centre_y - idt.face_half_height
    for _ in range(18):
        x0 = cx + strand_rng.uniform(-1.1, 1.1) * idt.face_half_width
        pen.line([(x0, top - 10), (x0 + strand_rng.uniform(-12, 12), top + strand_rng.uniform(20, 70))],
                 shade, 1.2)
    if idt.hair_style == "side_part":
        part_x = cx - np.sign(idt.hair_slant) * idt.face_half_width * 0.45
        pen.line([(part_x, top - 10), (part_x, top + 30)], shade, 2.0)
    layer.paste(hair, (0, 0), mask)


def _draw_eye(pen: _Pen, idt: FaceIdentity, x: float, y: float, blink: bool,
              gaze: tuple[float, float]) -> None:
    rx, ry = idt.eye_width, idt.eye_width * idt.eye_height
    dark = _colour(_mix(idt.skin, (20, 10, 10), 0.75), 255)
    if blink:
        pen.ellipse(x, y, rx, ry, fill=_colour(_mix(idt.skin, (0, 0, 0), 0.1), 255))
        pen.line(_arc(x, y - ry * 0.3, rx, ry * 0.8, 10, 170), dark, 1.6)
        return
    pen.ellipse(x, y, rx, ry, fill=(245, 245, 240, 255))
    r = min(ry * 0.95, rx * 0.55)
    ix, iy = x + gaze[0] * (rx - r) * 0.6, y + gaze[1] * ry * 0.15
    pen.ellipse(ix, iy, r, r, fill=_colour(idt.iris, 255))
    pen.ellipse(ix, iy, r * 0.45, r * 0.45, fill=(15, 12, 12, 255))
    pen.ellipse(ix + r * 0.3, iy - r * 0.3, r * 0.18, r * 0.18, fill=(255, 255, 255, 255))
    pen.ellipse(x, y, rx, ry, outline=dark, width=1.4)
    pen.line(_arc(x, y, rx, ry, 195, 345), dark, max(1.2, ry * 0.18))  # upper lid


def _draw_brow(pen: _Pen, idt: FaceIdentity, x: float, y: float, side: int, colour) -> None:
    w = idt.eye_width * 1.25
    inner, outer = x - side * w, x + side * w
    tilt = idt.brow_tilt
    pen.line([(inner, y + tilt * 0.5), (x, y - 3), (outer, y - tilt * 0.5 + 2)], colour, idt.brow_thickness)


def _draw_nose(pen: _Pen, idt: FaceIdentity) -> None:
    tx, ty = REFERENCE_250[2]
    shade = _colour(_mix(idt.skin, (60, 30, 20), 0.35), 255)
    w = idt.nose_width / 2
    pen.line([(tx - 3, idt.nose_top), (tx - w * 0.55, ty - 6), (tx - w, ty)], shade, 1.6)
    pen.line([(tx + 3, idt.nose_top), (tx + w * 0.55, ty - 6), (tx + w, ty)], shade, 1.6)
    pen.ellipse(tx - w * 0.45, ty + 1.5, w * 0.28, 2.6, fill=_colour(_mix(idt.skin, (40, 20, 15), 0.6), 255))
    pen.ellipse(tx + w * 0.45, ty + 1.5, w * 0.28, 2.6, fill=_colour(_mix(idt.skin, (40, 20, 15), 0.6), 255))
    pen.ellipse(tx, ty - 2, 3, 2.5, fill=_colour(_mix(idt.skin, (255, 255, 255), 0.25), 255))


def _draw_mouth(pen: _Pen, idt: FaceIdentity, left, right, expression: str) -> None:
    (lx, ly), (rx, ry) = left, right
    mx, my = (lx + rx) / 2, (ly + ry) / 2
    half = (rx - lx) / 2
    lip = _colour(idt.lip_colour, 255)
    t = idt.lip_thickness
    xs = np.linspace(-1, 1, 21)
    if expression == "open":
        depth = 14.0
        upper = [(mx + half * x, my - t - 2 * (1 - x * x)) for x in xs]
        lower = [(mx + half * x, my + depth * (1 - x * x) ** 0.7 + t * (1 - x * x)) for x in xs[::-1]]
        pen.polygon(upper + lower, lip)
        inner_top = [(mx + half * 0.85 * x, my) for x in xs]
        inner_bottom = [(mx + half * 0.85 * x, my + depth * 0.9 * (1 - x * x) ** 0.7) for x in xs[::-1]]
        pen.polygon(inner_top + inner_bottom, (60, 15, 20, 255))
        pen.polygon([(mx - half * 0.6, my), (mx + half * 0.6, my), (mx + half * 0.5, my + 4),
                     (mx - half * 0.5, my + 4)], (240, 238, 230, 255))
        return
    bend = 7.0 if expression == "smile" else 1.5
    centre = [(mx + half * x, my + bend * (1 - x * x)) for x in xs]
    upper = [(x, y - t * (1 - xs[i] ** 2) ** 0.5 - 0.8) for i, (x, y) in enumerate(centre)]
    lower = [(x, y + 1.2 * t * (1 - xs[i] ** 2) ** 0.5 + 0.8) for i, (x, y) in enumerate(centre)]
    pen.polygon(upper + lower[::-1], lip)
    pen.line(centre, _colour(_mix(idt.lip_colour, (0, 0, 0), 0.55), 255), 1.5)


def _draw_beard(pen: _Pen, idt: FaceIdentity, colour) -> None:
    """The jaw part of a full beard or a goatee (drawn before the mouth)."""
    mouth_x = (REFERENCE_250[3, 0] + REFERENCE_250[4, 0]) / 2
    if idt.beard == "full":
        pen.polygon([p for p in _face_outline(idt, n=144) if p[1] > REFERENCE_250[2, 1] + 12], colour)
    elif idt.beard == "goatee":
        pen.ellipse(mouth_x, REFERENCE_250[3, 1] + 22, idt.mouth_half_width * 0.7, 18, fill=colour)


def _draw_moustache(pen: _Pen, idt: FaceIdentity, colour) -> None:
    mouth_x, mouth_y = (REFERENCE_250[3] + REFERENCE_250[4]) / 2
    reach = idt.mouth_half_width + 3
    pen.line([(mouth_x - reach, mouth_y + 3), (mouth_x - 12, mouth_y - 11),
              (mouth_x + 12, mouth_y - 11), (mouth_x + reach, mouth_y + 3)], colour, 8)


def _draw_glasses(pen: _Pen, idt: FaceIdentity, eyes: np.ndarray) -> None:
    frame = _colour(idt.glasses_colour, 255)
    lens = (30, 30, 35, 235) if idt.glasses == "sun" else None
    r = idt.eye_width + 6
    for x, y in eyes:
        if idt.glasses == "square":
            pen.draw.rounded_rectangle(pen.box(x, y + 2, r, r * 0.72), radius=4 * pen.unit, fill=lens,
                                       outline=frame, width=max(1, int(2.4 * pen.unit)))
        else:
            pen.ellipse(x, y + 2, r, r * 0.85, fill=lens, outline=frame, width=2.4)
    (lx, ly), (rx, ry) = eyes
    pen.line([(lx + r, ly), ((lx + rx) / 2, ly - 4), (rx - r, ry)], frame, 2.4)
    half = idt.face_half_width
    pen.line([(lx - r, ly), (REFERENCE_250[2, 0] - half, ly - 2)], frame, 2.4)
    pen.line([(rx + r, ry), (REFERENCE_250[2, 0] + half, ry - 2)], frame, 2.4)


def _face_layer(idt: FaceIdentity, rng: np.random.Generator, px: int, expression: str,
                blink: bool) -> Image.Image:
    """The head and shoulders on a transparent supersampled layer, in the canonical pose."""
    layer = Image.new("RGBA", (px, px), (0, 0, 0, 0))
    pen = _Pen(layer, px / FACE_UNIT)
    cx = REFERENCE_250[2, 0]
    skin = _colour(idt.skin, 255)
    hair = _colour(idt.hair, 255)
    shirt = _colour(_hsv(rng.random(), rng.uniform(0, 0.9), rng.uniform(0.15, 0.95)), 255)
    _draw_hair_back(pen, idt, hair)
    pen.polygon([(cx - 30, 200), (cx + 30, 200), (cx + 34, 262), (cx - 34, 262)],
                _colour(_mix(idt.skin, (0, 0, 0), 0.18), 255))
    pen.ellipse(cx, 290, 120, 55, fill=shirt)
    for side in (-1, 1):
        ex = cx + side * idt.face_half_width * 0.97
        pen.ellipse(ex, 145, 10 * idt.ear_size, 20 * idt.ear_size,
                    fill=_colour(_mix(idt.skin, (0, 0, 0), 0.08), 255))
    pen.polygon(_face_outline(idt), skin)
    if idt.beard in ("full", "goatee"):
        _draw_beard(pen, idt, hair)
    _draw_hair_front(layer, idt, pen.unit)
    marks = identity_landmarks(idt)
    gaze = (rng.uniform(-1, 1), rng.uniform(-1, 1))
    brow_colour = _colour(_mix(idt.hair, (20, 15, 10), 0.5 if idt.hair_style != "bald" else 0.8), 255)
    for side, (x, y) in zip((-1, 1), marks[:2]):
        _draw_eye(pen, idt, x, y, blink, gaze)
        _draw_brow(pen, idt, x, y - idt.brow_gap, side, brow_colour)
    _draw_nose(pen, idt)
    _draw_mouth(pen, idt, marks[3], marks[4], expression)
    if idt.beard in ("full", "moustache"):
        _draw_moustache(pen, idt, hair)
    if idt.mole is not None:
        pen.ellipse(cx + idt.mole[0], idt.face_centre_y + idt.mole[1], 2.6, 2.6,
                    fill=_colour(_mix(idt.skin, (40, 20, 10), 0.7), 255))
    if idt.glasses != "none":
        _draw_glasses(pen, idt, marks[:2])
    return layer


def _pose(rng: np.random.Generator) -> tuple[float, float, float]:
    """Per-image head pose: (degrees, dx, dy) in 250-px units."""
    return rng.uniform(-5, 5), rng.uniform(-3, 3), rng.uniform(-3, 3)


def _pose_matrix(angle: float, dx: float, dy: float, pivot: Sequence[float]) -> np.ndarray:
    """2x3 matrix taking canonical points to posed points (rotation about pivot, then shift)."""
    a = math.radians(angle)
    rot = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    p = np.asarray(pivot, np.float64)
    return np.hstack([rot, (p - rot @ p + np.array([dx, dy]))[:, None]])


def _apply_pose(layer: Image.Image, forward: np.ndarray, unit: float) -> Image.Image:
    """Warp the layer by the forward 2x3 matrix (given in face units) on the supersampled canvas."""
    m = np.vstack([forward, [0, 0, 1]])
    scale = np.diag([unit, unit, 1.0])
    pixel = scale @ m @ np.linalg.inv(scale)
    inverse = np.linalg.inv(pixel)[:2].ravel()
    return layer.transform(layer.size, Image.AFFINE, tuple(inverse), resample=Image.BILINEAR)


def render_face(identity: FaceIdentity, rng: np.random.Generator,
                size: int = 250) -> tuple[Image.Image, np.ndarray]:
    """Draw one image of an identity; return it and its five landmarks in pixels of that image."""
    px = size * SUPERSAMPLE
    unit = px / FACE_UNIT
    expression = EXPRESSIONS[rng.choice(3, p=[0.5, 0.3, 0.2])]
    blink = bool(rng.random() < 0.12)
    layer = _face_layer(identity, rng, px, expression, blink)
    angle, dx, dy = _pose(rng)
    forward = _pose_matrix(angle, dx, dy, REFERENCE_250[2])
    layer = _apply_pose(layer, forward, unit).resize((size, size), Image.BOX)
    background = Image.fromarray(np.clip(_background(rng, size, size), 0, 255).astype(np.uint8), "RGB")
    background.paste(layer, (0, 0), layer)
    if rng.random() < 0.3:
        background = background.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.1) * size / 250))
    img = _light_and_noise(rng, background, gain=(0.7, 1.25), slope=0.35, tint=0.06, noise=(2, 7))
    marks = identity_landmarks(identity)
    posed = marks @ forward[:, :2].T + forward[:, 2]
    return img, (posed * size / FACE_UNIT).astype(np.float32)


@dataclass
class FaceSetInfo:
    """What generate_faces wrote: where, the labels, the landmarks and the planted bad files."""

    root: Path
    images_dir: Path
    labels_file: Path
    planted_file: Path
    size: int
    image_ids: list[str]
    identities: np.ndarray                 # int64, one per image id
    ages: np.ndarray                       # float32, NaN = null label
    landmarks: np.ndarray                  # (N, 5, 2) float32, pixels of the written image
    identity_landmarks: np.ndarray         # (identities, 5, 2) in pixels, before per-image pose
    missing: list[str] = field(default_factory=list)
    corrupt: dict[str, str] = field(default_factory=dict)

    def path_of(self, image_id: str) -> Path:
        return self.images_dir / f"{image_id}.jpg"


def _render_identity(job: tuple[int, int, int, int]) -> tuple[list[bytes], np.ndarray, np.ndarray, float]:
    """Worker: all images of one identity as JPEG bytes, their landmarks, the identity's, its age."""
    seed, identity_index, per_identity, size = job
    identity = _sample_identity(_rng(seed, _FACES, identity_index))
    images, marks = [], []
    for k in range(per_identity):
        img, posed = render_face(identity, _rng(seed, _FACES, identity_index, k + 1), size)
        images.append(_jpeg_bytes(img))
        marks.append(posed)
    base = (identity_landmarks(identity) * size / FACE_UNIT).astype(np.float32)
    return images, np.stack(marks), base, identity.age


def _map_jobs(fn: Callable, jobs: list, workers: int | None, progress: Progress) -> list:
    """Run fn over jobs in order, in a process pool when more than one worker is useful."""
    workers = min(len(jobs), workers or os.cpu_count() or 1)
    results = []
    if workers <= 1:
        for job in jobs:
            results.append(fn(job))
            progress.advance()
        return results
    with pool_context().Pool(workers) as pool:     # no preload: under -m the workers
        # load this module as __mp_main__, and a preloaded copy made Python warn twice
        for result in pool.imap(fn, jobs):
            results.append(result)
            progress.advance()
    return results


def _write_labels(path: Path, image_ids: list[str], identities: np.ndarray, ages: np.ndarray,
                  landmarks: np.ndarray) -> None:
    with h5py.File(path, "w") as h5:
        h5.attrs["description"] = "labels for images stored on disk as images/<image_id>.jpg"
        h5.create_dataset("image_ids", data=image_ids, dtype=h5py.string_dtype("utf-8"))
        labels = h5.create_group("labels")
        labels.create_dataset("identity", data=identities.astype(np.int64))
        labels.create_dataset("age", data=ages.astype(np.float32))
        marks = h5.create_dataset("landmarks", data=landmarks.astype(np.float32))
        marks.attrs["points"] = ",".join(LANDMARK_NAMES)
        marks.attrs["units"] = "pixels of the stored image, (x, y)"


def _plant_bad_faces(images_dir: Path, image_ids: list[str], rng: np.random.Generator,
                     n_missing: int = 3) -> tuple[list[str], dict[str, str]]:
    """Delete n_missing images and spoil three more (truncated, empty, text); say which."""
    chosen = [image_ids[i] for i in rng.choice(len(image_ids), n_missing + 3, replace=False)]
    missing = sorted(chosen[:n_missing])
    for image_id in missing:
        (images_dir / f"{image_id}.jpg").unlink()
    truncated, empty, text = chosen[n_missing:]
    path = images_dir / f"{truncated}.jpg"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    (images_dir / f"{empty}.jpg").write_bytes(b"")
    (images_dir / f"{text}.jpg").write_text("this is a text file, not a JPEG image\n")
    corrupt = {truncated: TRUNCATED, empty: EMPTY, text: NOT_AN_IMAGE}
    return missing, dict(sorted(corrupt.items()))


def generate_faces(out: Path, n_identities: int = 100, per_identity: int = 8, size: int = 250,
                   seed: int = 0, workers: int | None = None,
                   emit: Callable[[str], None] | None = None) -> FaceSetInfo:
    """Write the hybrid face set into `out` (replacing it atomically) and describe it."""
    out = Path(out)
    if n_identities < 2 or per_identity < 2 or n_identities * per_identity < 12 or size < 64:
        raise ConfigError(f"faces: need at least 2 identities of 2 images, 12 images in all (6 are "
                          f"spoiled on purpose) and 64 px; got {n_identities} x {per_identity} at "
                          f"{size} px")
    jobs = [(seed, i, per_identity, size) for i in range(n_identities)]
    progress = Progress(len(jobs), "faces (identities)", emit=emit)
    results = _map_jobs(_render_identity, jobs, workers, progress)
    progress.finish()
    image_ids = [f"id_{i:04d}/{k:02d}" for i in range(n_identities) for k in range(per_identity)]
    identities = np.repeat(np.arange(n_identities, dtype=np.int64), per_identity)
    ages = np.repeat(np.array([r[3] for r in results], np.float32), per_identity)
    set_rng = _rng(seed, _FACES)
    n_null = max(1, round(0.05 * len(image_ids)))
    ages[set_rng.choice(len(image_ids), n_null, replace=False)] = np.nan
    landmarks = np.concatenate([r[1] for r in results])
    with atomic_dir(out) as tmp:
        images_dir = tmp / "images"
        for i, (jpegs, *_rest) in enumerate(results):
            (images_dir / f"id_{i:04d}").mkdir(parents=True)
            for k, data in enumerate(jpegs):
                (images_dir / f"id_{i:04d}" / f"{k:02d}.jpg").write_bytes(data)
        _write_labels(tmp / "labels.h5", image_ids, identities, ages, landmarks)
        missing, corrupt = _plant_bad_faces(images_dir, image_ids, set_rng)
        _write_json(tmp / PLANTED_FILE, {"missing": missing, "corrupt": corrupt})
        params = {"n_identities": n_identities, "per_identity": per_identity, "size": size}
        _write_marker(tmp, "faces", seed, params, {"images": len(image_ids)})
    return FaceSetInfo(root=out, images_dir=out / "images", labels_file=out / "labels.h5",
                       planted_file=out / PLANTED_FILE, size=size, image_ids=image_ids,
                       identities=identities, ages=ages, landmarks=landmarks,
                       identity_landmarks=np.stack([r[2] for r in results]),
                       missing=missing, corrupt=corrupt)


# --------------------------------------------------------------------------------------------
# Before/after pairs (seed 004)
# --------------------------------------------------------------------------------------------

PAIR_QUALITY = 92
FIXED_PAIR_SIZES = ((333, 251), (401, 299), (479, 359))  # odd sizes that a resizer must not round away


def pair_sizes(n_pairs: int, seed: int = 0) -> list[tuple[int, int]]:
    """(width, height) of each pair: landscape, 320x240 .. 480x360, never square."""
    rng = _rng(seed, _PAIRS)
    sizes = list(FIXED_PAIR_SIZES[:n_pairs])
    while len(sizes) < n_pairs:
        width, height = int(rng.integers(320, 481)), int(rng.integers(240, 361))
        if width != height:
            sizes.append((width, height))
    return sizes


def after_transform(before: Image.Image) -> Image.Image:
    """The 'edit' every after image is made with: denoise, warm colour grade, contrast, sharpen.

    A fixed local operation, so an image-to-image model can learn it from the pairs (and beat
    the identity mapping, which leaves the whole grade undone).
    """
    img = before.convert("RGB").filter(ImageFilter.MedianFilter(3))
    arr = np.asarray(img, np.float32) / 255.0
    gamma = np.array([0.85, 0.95, 1.12], np.float32)           # warm: lift red, hold blue back
    arr = arr ** gamma[None, None, :]
    arr = arr + 0.25 * (arr - 0.5) * (1 - np.abs(2 * arr - 1))  # gentle S-curve for contrast
    img = Image.fromarray(np.clip(arr * 255 + 0.5, 0, 255).astype(np.uint8), "RGB")
    img = ImageEnhance.Color(img).enhance(1.25)
    return img.filter(ImageFilter.UnsharpMask(radius=2, percent=70, threshold=2))


def generate_pairs(out: Path, n_pairs: int = 40, seed: int = 0) -> list[tuple[Path, Path]]:
    """Write n_pairs NNNN_before.jpg / NNNN_after.jpg into `out` (replaced atomically)."""
    out = Path(out)
    if n_pairs < 1:
        raise ConfigError(f"pairs: n_pairs must be at least 1, got {n_pairs}")
    written = []
    with atomic_dir(out) as tmp:
        for i, (width, height) in enumerate(pair_sizes(n_pairs, seed)):
            photo_seed = int(_rng(seed, _PAIRS, i).integers(0, 2**31))
            before = _jpeg_bytes(photo_like(width, height, photo_seed), PAIR_QUALITY)
            after = _jpeg_bytes(after_transform(Image.open(io.BytesIO(before))), PAIR_QUALITY)
            (tmp / f"{i:04d}_before.jpg").write_bytes(before)
            (tmp / f"{i:04d}_after.jpg").write_bytes(after)
            written.append((out / f"{i:04d}_before.jpg", out / f"{i:04d}_after.jpg"))
        _write_marker(tmp, "pairs", seed, {"n_pairs": n_pairs}, {"images": 2 * n_pairs})
    return written


# --------------------------------------------------------------------------------------------
# Object sequences (solo-learn HDF5 layout)
# --------------------------------------------------------------------------------------------

SEQUENCE_CLASSES = ("ball", "box", "star", "ring")
SEQUENCES_FILE = "sequences.h5"


@dataclass(frozen=True)
class _SequenceObject:
    """One object of a class: its look, and where its motion starts and goes."""

    shape: str
    colour: tuple[float, ...]
    accent: tuple[float, ...]
    radius: float              # in units of the image size
    aspect: float
    points: int                # star points / ball stripes
    background: tuple[float, ...]
    start: tuple[float, float]
    velocity: tuple[float, float]
    spin: float                # degrees per frame
    light_phase: float


def _sample_object(rng: np.random.Generator, shape: str, class_hue: float) -> _SequenceObject:
    hue = class_hue + rng.uniform(-0.08, 0.08)
    return _SequenceObject(
        shape=shape, colour=_hsv(hue, rng.uniform(0.55, 0.95), rng.uniform(0.6, 0.95)),
        accent=_hsv(hue + 0.5, rng.uniform(0.3, 0.8), rng.uniform(0.2, 0.9)),
        radius=rng.uniform(0.2, 0.3), aspect=rng.uniform(0.6, 1.0), points=int(rng.integers(4, 8)),
        background=_hsv(rng.random(), rng.uniform(0, 0.4), rng.uniform(0.1, 0.9)),
        start=(rng.uniform(0.35, 0.65), rng.uniform(0.35, 0.65)),
        velocity=(rng.uniform(-0.015, 0.015), rng.uniform(-0.015, 0.015)),
        spin=rng.uniform(-6, 6), light_phase=rng.uniform(0, 2 * math.pi))


def _shape_points(obj: _SequenceObject, cx: float, cy: float, r: float,
                  angle: float) -> list[tuple[float, float]]:
    """Outline of a box or star, rotated by angle (degrees)."""
    if obj.shape == "box":
        local = [(-1, -obj.aspect), (1, -obj.aspect), (1, obj.aspect), (-1, obj.aspect)]
    else:
        n = obj.points + 1
        local = [((1.0 if k % 2 == 0 else 0.45) * math.cos(math.pi * k / n),
                  (1.0 if k % 2 == 0 else 0.45) * math.sin(math.pi * k / n)) for k in range(2 * n)]
    a = math.radians(angle)
    return [(cx + r * (x * math.cos(a) - y * math.sin(a)), cy + r * (x * math.sin(a) + y * math.cos(a)))
            for x, y in local]


def _render_frame(obj: _SequenceObject, frame: int, size: int, rng: np.random.Generator) -> Image.Image:
    px = size * SUPERSAMPLE
    img = Image.new("RGB", (px, px), _colour(obj.background))
    draw = ImageDraw.Draw(img)
    cx = (obj.start[0] + obj.velocity[0] * frame) * px
    cy = (obj.start[1] + obj.velocity[1] * frame + 0.02 * math.sin(frame / 3)) * px
    r = obj.radius * px * (1 + 0.03 * math.sin(frame / 2))
    angle = obj.spin * frame
    colour, accent = _colour(obj.colour), _colour(obj.accent)
    if obj.shape == "ball":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
        for k in range(obj.points):  # stripes that turn with the ball
            a = math.radians(angle + 180 * k / obj.points)
            dx, dy = r * math.cos(a), r * math.sin(a)
            draw.line([(cx - dx, cy - dy), (cx + dx, cy + dy)],
                      fill=accent, width=max(1, int(r * 0.08)))
    elif obj.shape == "ring":
        ry = r * obj.aspect * (0.8 + 0.2 * math.cos(math.radians(angle)))  # tilting hoop
        draw.ellipse([cx - r, cy - ry, cx + r, cy + ry], outline=colour, width=max(1, int(r * 0.3)))
        draw.ellipse([cx - r * 0.15, cy - r * 0.15, cx + r * 0.15, cy + r * 0.15], fill=accent)
    else:
        draw.polygon(_shape_points(obj, cx, cy, r, angle), fill=colour)
        draw.polygon(_shape_points(obj, cx, cy, r * 0.35, angle), fill=accent)
    img = img.resize((size, size), Image.BOX)
    light = 1 + 0.25 * math.sin(obj.light_phase + frame / 2.5)
    arr = np.asarray(img, np.float32) * light + rng.normal(0, 3, (size, size, 3)).astype(np.float32)
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "RGB")


def generate_sequences(out: Path, n_classes: int = 4, objects_per_class: int = 6, frames: int = 10,
                       size: int = 64, seed: int = 0) -> Path:
    """Write `out`/sequences.h5: /<class>/obj<k>_<frame:03d>.jpg JPEG bytes; return its path."""
    out = Path(out)
    if not 1 <= n_classes <= len(SEQUENCE_CLASSES) or objects_per_class < 1 or frames < 1 or size < 16:
        raise ConfigError(f"sequences: need 1..{len(SEQUENCE_CLASSES)} classes, at least one object "
                          f"and frame, and 16 px; got {n_classes}, {objects_per_class}, {frames}, {size}")
    with atomic_dir(out) as tmp:
        with h5py.File(tmp / SEQUENCES_FILE, "w") as h5:
            for c, shape in enumerate(SEQUENCE_CLASSES[:n_classes]):
                group = h5.create_group(shape)
                class_hue = c / len(SEQUENCE_CLASSES)
                for k in range(objects_per_class):
                    rng = _rng(seed, _SEQUENCES, c, k)
                    obj = _sample_object(rng, shape, class_hue)
                    for f in range(frames):
                        data = _jpeg_bytes(_render_frame(obj, f, size, rng))
                        group.create_dataset(f"obj{k}_{f:03d}.jpg", data=np.frombuffer(data, np.uint8))
        params = {"n_classes": n_classes, "objects_per_class": objects_per_class, "frames": frames,
                  "size": size}
        _write_marker(tmp, "sequences", seed, params,
                      {"images": n_classes * objects_per_class * frames})
    return out / SEQUENCES_FILE


# --------------------------------------------------------------------------------------------
# iNaturalist-2017-style COCO JSON
# --------------------------------------------------------------------------------------------

# (name, supercategory, motif, main colour, second colour), in decreasing train frequency.
INAT_CATEGORIES = (
    ("Corvus corax", "Aves", "bird", (25, 25, 30), (70, 70, 80)),
    ("Helianthus annuus", "Plantae", "flower", (245, 200, 30), (110, 60, 20)),
    ("Danaus plexippus", "Insecta", "butterfly", (235, 120, 20), (20, 20, 20)),
    ("Cardinalis cardinalis", "Aves", "bird", (200, 25, 30), (30, 20, 20)),
    ("Yucca schidigera", "Plantae", "rosette", (70, 120, 60), (200, 210, 170)),
    ("Coccinella septempunctata", "Insecta", "beetle", (210, 30, 25), (15, 15, 15)),
    ("Cyanocitta cristata", "Aves", "bird", (60, 110, 210), (235, 235, 240)),
    ("Quercus agrifolia", "Plantae", "leaf", (40, 100, 35), (120, 160, 70)),
)
INAT_TRAIN_COUNTS = (60, 36, 22, 14, 9, 6, 4, 3)
INAT_IMAGES_DIR = "train_val_images"


def _draw_motif(draw: ImageDraw.ImageDraw, motif: str, cx: float, cy: float, r: float,
                main, second, rng: np.random.Generator) -> None:
    """Draw a category's motif centred at (cx, cy) with size r."""
    if motif == "bird":
        draw.ellipse([cx - r, cy - 0.55 * r, cx + r, cy + 0.55 * r], fill=main)            # body
        draw.ellipse([cx + 0.55 * r, cy - 0.95 * r, cx + 1.15 * r, cy - 0.35 * r], fill=main)  # head
        beak = [(cx + 1.1 * r, cy - 0.7 * r), (cx + 1.45 * r, cy - 0.6 * r), (cx + 1.1 * r, cy - 0.5 * r)]
        draw.polygon(beak, fill=(230, 170, 40))
        tail = [(cx - 0.9 * r, cy - 0.1 * r), (cx - 1.6 * r, cy - 0.5 * r), (cx - 1.5 * r, cy + 0.2 * r)]
        draw.polygon(tail, fill=second)
        draw.ellipse([cx - 0.4 * r, cy - 0.4 * r, cx + 0.5 * r, cy + 0.2 * r], fill=second)  # wing
    elif motif == "flower":
        for k in range(14):
            a = 2 * math.pi * k / 14
            px, py = cx + 0.75 * r * math.cos(a), cy + 0.75 * r * math.sin(a)
            draw.ellipse([px - 0.32 * r, py - 0.32 * r, px + 0.32 * r, py + 0.32 * r], fill=main)
        draw.ellipse([cx - 0.5 * r, cy - 0.5 * r, cx + 0.5 * r, cy + 0.5 * r], fill=second)
    elif motif == "butterfly":
        for side in (-1, 1):
            draw.ellipse(_side_box(cx, cy - 0.45 * r, side * 0.9 * r, 0.55 * r), fill=main, outline=second,
                         width=max(1, int(r * 0.08)))
            draw.ellipse(_side_box(cx, cy + 0.35 * r, side * 0.65 * r, 0.4 * r), fill=main, outline=second,
                         width=max(1, int(r * 0.08)))
        draw.ellipse([cx - 0.1 * r, cy - 0.8 * r, cx + 0.1 * r, cy + 0.8 * r], fill=second)
    elif motif == "beetle":
        draw.ellipse([cx - r, cy - 0.8 * r, cx + r, cy + 0.8 * r], fill=main)
        draw.ellipse([cx + 0.7 * r, cy - 0.4 * r, cx + 1.2 * r, cy + 0.4 * r], fill=second)
        draw.line([(cx - r, cy), (cx + 0.8 * r, cy)], fill=second, width=max(1, int(r * 0.06)))
        for _ in range(7):
            sx, sy = cx + rng.uniform(-0.6, 0.5) * r, cy + rng.uniform(-0.5, 0.5) * r
            draw.ellipse([sx - 0.13 * r, sy - 0.13 * r, sx + 0.13 * r, sy + 0.13 * r], fill=second)
    elif motif == "rosette":
        for k in range(16):
            a = math.pi + math.pi * k / 15
            tip = (cx + 1.3 * r * math.cos(a), cy + 1.3 * r * math.sin(a))
            base = [(cx - 0.08 * r * math.sin(a), cy + 0.08 * r * math.cos(a) + 0.5 * r),
                    (cx + 0.08 * r * math.sin(a), cy - 0.08 * r * math.cos(a) + 0.5 * r)]
            draw.polygon([base[0], tip, base[1]], fill=main if k % 3 else second)
    else:  # leaf: a lobed oak leaf with its midrib
        for k in range(5):
            t = -0.8 + 0.4 * k
            lobe_x = cx + t * r
            draw.ellipse([lobe_x - 0.35 * r, cy - 0.55 * r, lobe_x + 0.35 * r, cy + 0.55 * r], fill=main)
        draw.line([(cx - 1.3 * r, cy), (cx + 1.1 * r, cy)], fill=second, width=max(1, int(r * 0.07)))


def _side_box(cx: float, cy: float, dx: float, ry: float) -> list[float]:
    """Bounding box of an ellipse that extends dx (either sign) sideways from cx."""
    x0, x1 = sorted((cx, cx + dx))
    return [x0, cy - ry, x1, cy + ry]


def _render_inat(category: int, rng: np.random.Generator) -> Image.Image:
    """One image of a category: its motif on a muted natural-looking background, non-square."""
    while True:
        width, height = int(rng.integers(200, 401)), int(rng.integers(200, 401))
        if abs(width - height) >= 20:
            break
    name, _, motif, main, second = INAT_CATEGORIES[category]
    back = _background(rng, width, height, muted=True)
    img = Image.fromarray(np.clip(back, 0, 255).astype(np.uint8), "RGB").resize(
        (width * SUPERSAMPLE, height * SUPERSAMPLE), Image.BILINEAR)
    draw = ImageDraw.Draw(img)
    short = min(width, height) * SUPERSAMPLE
    r = short * rng.uniform(0.18, 0.3)
    cx = rng.uniform(0.35, 0.65) * width * SUPERSAMPLE
    cy = rng.uniform(0.35, 0.65) * height * SUPERSAMPLE
    shade = rng.uniform(0.85, 1.15)
    _draw_motif(draw, motif, cx, cy, r, _colour(np.array(main) * shade), _colour(second), rng)
    img = img.resize((width, height), Image.BOX)
    return _light_and_noise(rng, img, gain=(0.8, 1.15), slope=0.2, tint=0.04, noise=(2, 6))


def _inat_split(split: str, counts: Sequence[int], first_id: int, seed: int,
                images_root: Path) -> dict:
    """Render one split's images under images_root and return its COCO document."""
    images, annotations = [], []
    image_id = first_id
    for category, count in enumerate(counts):
        name, supercategory = INAT_CATEGORIES[category][:2]
        for k in range(count):
            rng = _rng(seed, _INAT, 0 if split == "train" else 1, category, k)
            digest = hashlib.md5(f"{seed}/{split}/{category}/{k}".encode()).hexdigest()
            file_name = f"{INAT_IMAGES_DIR}/{supercategory}/{name}/{digest}.jpg"
            img = _render_inat(category, rng)
            path = images_root / file_name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(_jpeg_bytes(img))
            images.append({"id": image_id, "file_name": file_name, "width": img.width,
                           "height": img.height, "license": 1, "rights_holder": "imageds sample data"})
            annotations.append({"id": image_id, "image_id": image_id, "category_id": category})
            image_id += 1
    categories = [{"id": i, "name": c[0], "supercategory": c[1]} for i, c in enumerate(INAT_CATEGORIES)]
    info = {"year": 2017, "version": "sample", "description": f"imageds sample data, {split}"}
    return {"info": info, "images": images, "annotations": annotations, "categories": categories,
            "licenses": [{"id": 1, "name": "CC0", "url": ""}]}


def _plant_inat_quality(root: Path, train: dict, spoiled: set[str], seed: int) -> dict:
    """Spoil a few more train images, for the quality report and the leakage check to find:
    an exact copy of a class-0 image filed under class 1 (a duplicate with another label), a
    re-encoded copy of a class-0 image under another class-0 name (a near duplicate), a blurred
    photo in place of a class-2 image and a darkened class-2 image (a set too small for one goes
    without it). Returns what was planted, by file_name."""
    by_class: dict[int, list[str]] = {}
    for image, annotation in zip(train["images"], train["annotations"]):
        if image["file_name"] not in spoiled:
            by_class.setdefault(annotation["category_id"], []).append(image["file_name"])
    rng = _rng(seed, _INAT, 7)
    pick = {c: [files[i] for i in rng.permutation(len(files))] for c, files in by_class.items()}
    planted: dict = {"duplicates": {"exact": [], "near": []}, "quality": {"blurry": [], "dark": []}}
    replaced = []
    zeros, ones, twos = pick.get(0, []), pick.get(1, []), pick.get(2, [])
    if len(zeros) >= 3 and ones:              # a set too small for a plant goes without it
        first, second, third, other = zeros[0], zeros[1], zeros[2], ones[0]
        (root / other).write_bytes((root / first).read_bytes())
        original = Image.open(root / second).convert("RGB")
        (root / third).write_bytes(_jpeg_bytes(original, quality=60))
        planted["duplicates"] = {"exact": [[first, other]], "near": [[second, third]]}
        replaced += [other, third]
    if len(twos) >= 2:
        blurred, darkened = twos[0], twos[1]
        size = Image.open(root / blurred).size    # a photo, blurred: the renders' own narrow
        photo = photo_like(*size, seed=seed + 7)  # histograms already read as not blurry
        (root / blurred).write_bytes(_jpeg_bytes(photo.filter(ImageFilter.GaussianBlur(6))))
        image = Image.open(root / darkened).convert("RGB")
        (root / darkened).write_bytes(_jpeg_bytes(ImageEnhance.Brightness(image).enhance(0.12)))
        planted["quality"] = {"blurry": [blurred], "dark": [darkened]}
        replaced += [blurred, darkened]
    for image in train["images"]:                     # the replaced files' own sizes
        if image["file_name"] in replaced:
            image["width"], image["height"] = Image.open(root / image["file_name"]).size
    return planted


def generate_inat(out: Path, seed: int = 0,
                  train_counts: Sequence[int] = INAT_TRAIN_COUNTS) -> dict[str, Path]:
    """Write train2017.json / val2017.json and their images into `out` (replaced atomically).

    Val holds about 20% of each category's train count (at least one). One train image is
    missing and one truncated; PLANTED.json names them by file_name.
    """
    out = Path(out)
    if not 2 <= len(train_counts) <= len(INAT_CATEGORIES) or min(train_counts) < 2:
        raise ConfigError(f"inat: need 2..{len(INAT_CATEGORIES)} categories of at least 2 train "
                          f"images each, got {list(train_counts)}")
    val_counts = [max(1, round(0.2 * c)) for c in train_counts]
    with atomic_dir(out) as tmp:
        train = _inat_split("train", train_counts, 0, seed, tmp)
        val = _inat_split("val", val_counts, len(train["images"]), seed, tmp)
        for doc in (train, val):
            doc["categories"] = doc["categories"][: len(train_counts)]
        largest = [im["file_name"] for im, a in zip(train["images"], train["annotations"])
                   if a["category_id"] == 0]
        pick = _rng(seed, _INAT).choice(len(largest), 2, replace=False)
        missing, truncated = largest[pick[0]], largest[pick[1]]
        (tmp / missing).unlink()
        data = (tmp / truncated).read_bytes()
        (tmp / truncated).write_bytes(data[: len(data) // 2])
        quality = _plant_inat_quality(tmp, train, {missing, truncated}, seed)
        _write_json(tmp / "train2017.json", train)       # after the plants: their sizes
        _write_json(tmp / "val2017.json", val)
        _write_json(tmp / PLANTED_FILE, {"missing": [missing], "corrupt": {truncated: TRUNCATED},
                                         **quality})
        params = {"train_counts": list(train_counts)}
        _write_marker(tmp, "inat", seed, params,
                      {"train": len(train["images"]), "val": len(val["images"])})
    return {"train": out / "train2017.json", "val": out / "val2017.json", "images": out / INAT_IMAGES_DIR}


# --------------------------------------------------------------------------------------------
# All sets, and the command line
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SetResult:
    """What generate_all did with one set: 'made' or 'kept', where, and a one-line summary."""

    name: str
    path: Path
    status: str
    summary: str


def read_marker(folder: Path) -> dict | None:
    """The set's completion marker, or None when it is absent or unreadable (= incomplete)."""
    try:
        doc = json.loads((Path(folder) / COMPLETE_MARKER).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _parse_only(only: str | Iterable[str] | None) -> list[str]:
    if only is None:
        return list(SETS)
    names = [n.strip() for n in (only.split(",") if isinstance(only, str) else only) if n.strip()]
    unknown = [n for n in names if n not in SETS]
    if unknown or not names:
        raise ConfigError(f"--only {','.join(names) or '(empty)'}: unknown set(s) "
                          f"{', '.join(unknown) or '(none given)'}; choose from {','.join(SETS)}")
    return [n for n in SETS if n in names]


def _build(name: str, folder: Path, seed: int, emit: Callable[[str], None]) -> str:
    """Build one set with its default size; return a summary line."""
    if name == "faces":
        info = generate_faces(folder, seed=seed, emit=emit)
        return (f"{len(info.image_ids)} face images ({len(set(info.identities.tolist()))} identities) "
                f"+ labels.h5; planted {len(info.missing)} missing, {len(info.corrupt)} corrupt")
    if name == "pairs":
        pairs = generate_pairs(folder, seed=seed)
        return f"{len(pairs)} before/after pairs"
    if name == "sequences":
        generate_sequences(folder, seed=seed)
        return f"{SEQUENCES_FILE}: {len(SEQUENCE_CLASSES)} classes x 6 objects x 10 frames"
    paths = generate_inat(folder, seed=seed)
    counts = [len(json.loads(paths[s].read_text())["images"]) for s in ("train", "val")]
    return f"iNat-style JSON: {counts[0]} train, {counts[1]} val images; planted 1 missing, 1 truncated"


def generate_all(out: Path, seed: int = 0, only: str | Iterable[str] | None = None,
                 force: bool = False, emit: Callable[[str], None] | None = None) -> list[SetResult]:
    """Build every requested set under `out`, keeping complete ones made with the same seed."""
    out = Path(out)
    if not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"--seed {seed!r}: the seed must be a non-negative integer")
    emit = emit or log.info
    results = []
    for name in _parse_only(only):
        folder = out / name
        marker = read_marker(folder)
        if marker is not None and marker.get("seed") == seed and not force \
                and marker.get("version", 1) == SET_VERSIONS.get(name, 1):
            results.append(SetResult(name, folder, "kept",
                                     f"already complete ({folder / COMPLETE_MARKER}); --force rebuilds it"))
            continue
        start = time.monotonic()
        summary = _build(name, folder, seed, emit)
        results.append(SetResult(name, folder, "made", f"{summary} in {time.monotonic() - start:.1f}s"))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.sample_data",
                                     description="Write the bundled sample data (deterministic).")
    parser.add_argument("--out", required=True, type=Path, help="folder to write the sets into")
    parser.add_argument("--force", action="store_true", help="rebuild sets that are already complete")
    parser.add_argument("--only", default=None, help=f"comma-separated subset of {','.join(SETS)}")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        results = generate_all(args.out, seed=args.seed, only=args.only, force=args.force, emit=print)
    except (DatasetError, OSError) as exc:
        print(f"sample data: {exc}", file=sys.stderr)
        return 2
    for r in results:
        print(f"{r.name:<10} {r.status:<5} {r.path}: {r.summary}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
