"""Temporal contrastive pretraining: the learned features classify frames of held-out sequences
by kNN better than the same network at random initialisation, in the same run."""

from __future__ import annotations

import colorsys
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from ml.errors import ConfigError
from ml.eval.knn import knn_accuracy, knn_predict
from ml.formats.h5_store import H5Item, index_h5_store, write_h5_store
from ml.formats.handles import H5StoreHandle
from ml.models.simclr import nt_xent_loss
from ml.train.config import load_section
from ml.train.contrastive import Config, split_sequences, train
from ml.train.ddp import DistEnv
from ml.train.report import Reporter

SHAPES = ("cross", "disc", "square", "triangle")     # one class per shape (sorted: class index)
OBJECTS, FRAMES, SIZE = 8, 6, 32


def outline(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if shape == "square":
        unit = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
    elif shape == "triangle":
        unit = [(math.cos(a), math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    else:
        w = 0.35
        unit = [(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1), (-w, w),
                (-1, w), (-1, -w), (-w, -w)]
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + r * (x * c - y * s), cy + r * (x * s + y * c)) for x, y in unit]


def rgb(h: float, s: float, v: float) -> tuple[int, ...]:
    return tuple(int(255 * c) for c in colorsys.hsv_to_rgb(h % 1.0, s, v))


def render(shape: str, colour, r: float, cx: float, cy: float, angle: float,
           rng: np.random.Generator) -> bytes:
    """One frame: the object over a background drawn afresh for every frame."""
    big = SIZE * 3
    background = rgb(rng.random(), rng.uniform(0, 0.6), rng.uniform(0.15, 0.95))
    img = Image.new("RGB", (big, big), background)
    pen = ImageDraw.Draw(img)
    if shape == "disc":
        pen.ellipse([(cx - r) * big, (cy - r) * big, (cx + r) * big, (cy + r) * big], fill=colour)
    else:
        pen.polygon([(x * big, y * big) for x, y in outline(shape, cx, cy, r, angle)], fill=colour)
    pixels = np.asarray(img.resize((SIZE, SIZE), Image.BOX), np.float32)
    pixels += rng.normal(0, 4, pixels.shape)
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, "PNG")
    return out.getvalue()


def moving_object_sequences(seed: int = 0):
    """Objects that persist, move and turn while the scene behind them changes every frame
    (a camera passing over varied backgrounds): what stays constant within a time window is
    the object, so temporal positives teach the object. Object colours are near their class's
    hue, shapes are the class."""
    rng = np.random.default_rng(seed)
    for c, shape in enumerate(SHAPES):
        for k in range(OBJECTS):
            colour = rgb(c / len(SHAPES) + rng.uniform(-0.06, 0.06), rng.uniform(0.6, 1),
                         rng.uniform(0.6, 1))
            r, (cx, cy), (vx, vy) = rng.uniform(0.18, 0.26), rng.uniform(0.35, 0.65, 2), \
                rng.uniform(-0.02, 0.02, 2)
            angle, spin = rng.uniform(0, 2 * math.pi), rng.uniform(-0.3, 0.3)
            for f in range(FRAMES):
                data = render(shape, colour, r, cx + vx * f, cy + vy * f, angle + spin * f, rng)
                yield H5Item(shape, f"obj{k}", f, data, "png")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sequences")
    written = write_h5_store(root / "sequences.h5", moving_object_sequences())
    handle = H5StoreHandle(path=str(written.path), num_images=written.items,
                           num_sequences=written.sequences, num_classes=written.classes)
    (root / "h5_store.handle.json").write_text(handle.to_json())
    return root / "h5_store.handle.json"


def test_learned_features_beat_random_init_on_held_out_sequences(store, tmp_path):
    torch.set_num_threads(2)
    values = {"image_size": 32, "widths": [16, 32, 64, 128], "epochs": 10, "batch_size": 32,
              "window": 5, "temperature": 0.5, "hue_jitter": 0.0, "lr": 2e-3,
              "weight_decay": 1e-4, "seed": 0, "device": "cpu"}
    reporter = Reporter(sinks=[])
    summary = train(Config.parse(values, "test"), {"h5_store": str(store)}, tmp_path,
                    reporter, DistEnv.from_environment("cpu"))
    assert summary["knn_accuracy"] > summary["knn_accuracy_random_init"] + 0.05, summary
    assert summary["heldout_sequences"] == len(SHAPES) * round(0.25 * OBJECTS)
    assert summary["query_frames"] == summary["heldout_sequences"] * FRAMES
    losses = reporter.series("loss")[1]
    assert sum(losses[-3:]) < sum(losses[:3]), "the NT-Xent loss went down"
    assert Path(summary["checkpoint"]).name == "epoch_0010.pt"
    assert Path(summary["curves_png"]).is_file()
    with Image.open(summary["neighbours_png"]) as grid:   # queries x (query + 5 neighbours)
        assert grid.width > grid.height > 100
    json.dumps(summary)


def test_held_out_sequences_are_whole_and_per_class(store):
    index = index_h5_store(json.loads(store.read_text())["path"])
    train_seq, held = split_sequences(index, 0.25, seed=0)
    assert set(train_seq).isdisjoint(held) and len(train_seq) + len(held) == len(SHAPES) * OBJECTS
    held_classes = index.class_index[index.sequence_start[held]]
    assert sorted(held_classes.tolist()) == sorted(list(range(len(SHAPES))) * round(0.25 * OBJECTS))
    with pytest.raises(ConfigError, match="holdout_fraction"):
        split_sequences(index, 1.0, seed=0)


def test_nt_xent_prefers_aligned_views_and_skips_same_sequence_negatives():
    torch.manual_seed(0)
    z = torch.randn(8, 16)
    aligned = nt_xent_loss(z, z + 0.01 * torch.randn(8, 16), temperature=0.1)
    shuffled = nt_xent_loss(z, z[torch.randperm(8)], temperature=0.1)
    assert aligned < 0.1 < shuffled
    # Two pairs from one sequence: without masking each is the other's hardest negative.
    twins = torch.cat([z[:1], z[:1], z[2:]])
    unmasked = nt_xent_loss(twins, twins, temperature=0.1)
    groups = torch.tensor([0, 0, 2, 3, 4, 5, 6, 7])
    masked = nt_xent_loss(twins, twins, temperature=0.1, groups=groups)
    assert masked < unmasked - 0.1
    uniform = nt_xent_loss(torch.ones(4, 3), torch.ones(4, 3), temperature=1.0)
    assert uniform.item() == pytest.approx(math.log(7), abs=1e-4), "2n-1 equal logits"


def test_knn_votes_by_similarity():
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    labels = torch.tensor([0, 0, 1, 1])
    queries = torch.tensor([[1.0, 0.2], [0.2, 1.0]])
    assert knn_predict(bank, labels, queries, k=3).tolist() == [0, 1]
    assert knn_accuracy(bank, labels, queries, torch.tensor([0, 0]), k=3) == 0.5


@pytest.mark.parametrize("path", ["config/train.yaml", "config/gpu.yaml"])
def test_config_sections_are_valid(path):
    repo = Path(__file__).resolve().parents[3]
    cfg = Config.parse(load_section(repo / path, "contrastive"), path)
    assert cfg.epochs >= 1
