from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ml import transforms as mt
from ml.collate import NormalizeCollate
from ml.errors import ConfigError, ImageError
from ml.items import MaskedItem
from ml.transforms import (
    ARCFACE_REFERENCE_POINTS, CASIA_REFERENCE_POINTS, MedicalMaskOcclusion, Normalize,
    OcclusionMaskWrapper, RandomErasing, RandomHorizontalFlipWithMask, RandomOcclusion,
    RandomSizedRectCrop, RectScale, SyntheticOcclusionMask, ToTensorWithMask,
    ToUint8TensorWithMask, cell_coverage, face_train_transform, load_mask_picture,
    make_mask_picture)


def noise_image(width: int = 112, height: int = 112, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def occluded_at(mask: Image.Image, x: float, y: float) -> bool:
    return np.asarray(mask)[int(round(y)), int(round(x))] == 0


def coverage_points(points, scale: float = 1.0) -> list[tuple[float, float]]:
    """Mouth corners, mouth centre, and the nose-to-mouth region between them."""
    nose, left, right = (np.asarray(p) * scale for p in points)
    centre = (left + right) / 2
    between = (nose + centre) / 2
    return [tuple(p) for p in (left, right, centre, between, (nose + between) / 2)]


@pytest.mark.parametrize("points, size", [(CASIA_REFERENCE_POINTS, 112),
                                          (ARCFACE_REFERENCE_POINTS, 112),
                                          (CASIA_REFERENCE_POINTS, 250)])
def test_medical_mask_covers_mouth_and_nose_and_leaves_eyes_visible(points, size):
    image = noise_image(size, size)
    original = np.asarray(image).copy()
    occlusion = MedicalMaskOcclusion(prob=1.0, ref_points=points, seed=11)
    scale = size / 112
    eye_rows = int(50 * scale)
    for _ in range(300):
        occluded, mask = occlusion(image)
        assert mask.mode == "L" and mask.size == image.size
        values = np.asarray(mask)
        assert set(np.unique(values)) <= {0, 255}
        assert (values[:eye_rows] == 255).all(), "the mask reached the eyes"
        for x, y in coverage_points(points, scale):
            assert occluded_at(mask, x, y), f"({x:.0f}, {y:.0f}) left visible"
        pixels = np.asarray(occluded)
        # visible pixels away from the antialiased edge keep their values
        assert (pixels[:eye_rows] == original[:eye_rows]).all()
        assert (pixels[values == 0] != original[values == 0]).any(axis=-1).mean() > 0.9
    assert (np.asarray(image) == original).all(), "the input image was modified"


def test_medical_mask_probability_and_untouched_path():
    image = noise_image()
    never = MedicalMaskOcclusion(prob=0.0, seed=0)
    same, mask = never(image)
    assert same is image and (np.asarray(mask) == 255).all()
    half = MedicalMaskOcclusion(prob=0.5, seed=0)
    applied = [(np.asarray(half(image)[1]) == 0).any() for _ in range(400)]
    assert 0.42 < np.mean(applied) < 0.58


def test_medical_mask_is_reproducible_with_a_seed():
    image = noise_image()
    a, b = MedicalMaskOcclusion(prob=1.0, seed=3), MedicalMaskOcclusion(prob=1.0, seed=3)
    results_a = [np.asarray(a(image)[1]) for _ in range(5)]
    results_b = [np.asarray(b(image)[1]) for _ in range(5)]
    assert all((x == y).all() for x, y in zip(results_a, results_b))
    assert not (results_a[0] == results_a[1]).all()


def test_mask_picture_is_read_once(tmp_path, monkeypatch):
    path = tmp_path / "my_mask.png"
    make_mask_picture((100, 60)).save(path)
    opened = []
    real_open = Image.open
    monkeypatch.setattr(mt.Image, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    first = MedicalMaskOcclusion(mask_path=path, prob=1.0, seed=0)
    second = MedicalMaskOcclusion(mask_path=str(path), prob=1.0, seed=1)
    for _ in range(20):
        first(noise_image())
        second(noise_image())
    assert len(opened) == 1


def test_shipped_mask_picture_is_the_drawn_one_and_is_regenerated_when_missing(tmp_path, monkeypatch):
    shipped = Image.open(mt.DEFAULT_MASK_PATH)
    assert shipped.mode == "RGBA" and shipped.size == mt.MASK_PICTURE_SIZE
    drawn = np.asarray(make_mask_picture(), dtype=np.int16)
    assert np.abs(np.asarray(shipped, dtype=np.int16) - drawn).max() <= 1
    alpha = drawn[..., 3]
    assert alpha[0, 0] == 0 and alpha[60, 100] == 255        # transparent corner, opaque body

    monkeypatch.setattr(mt, "DEFAULT_MASK_PATH", tmp_path / "absent.png")
    load_mask_picture.cache_clear()
    try:
        occluded, mask = MedicalMaskOcclusion(prob=1.0, seed=0)(noise_image())
        assert (np.asarray(mask) == 0).any()
    finally:
        load_mask_picture.cache_clear()


def test_mask_picture_without_alpha_treats_white_as_transparent(tmp_path):
    path = tmp_path / "mask.jpg"
    picture = Image.new("RGB", (200, 120), (255, 255, 255))
    picture.paste((90, 140, 200), (60, 10, 140, 110))
    picture.save(path, quality=95)
    alpha = np.asarray(load_mask_picture(str(path)).getchannel("A"))
    assert alpha[5, 5] == 0 and alpha[60, 100] == 255


def test_bad_mask_path_and_parameters_raise_our_errors(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        MedicalMaskOcclusion(mask_path=tmp_path / "nope.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(ImageError, match="not a readable image"):
        MedicalMaskOcclusion(mask_path=tmp_path / "broken.png")
    with pytest.raises(ConfigError, match="prob"):
        MedicalMaskOcclusion(prob=1.5)
    with pytest.raises(ConfigError, match="3 \\(x, y\\) points"):
        MedicalMaskOcclusion(ref_points=[(1, 2), (3, 4)])
    with pytest.raises(ConfigError, match="PIL image"):
        MedicalMaskOcclusion()(torch.zeros(3, 112, 112))


def test_synthetic_occlusion_marks_the_covered_feature_map_cells():
    image = Image.new("RGB", (112, 112), (128, 128, 128))
    occlusion = SyntheticOcclusionMask(prob=1.0, seed=5)
    for _ in range(50):
        occluded, mask = occlusion(image)
        assert mask.shape == (7, 7) and mask.dtype == np.float32
        changed = (np.asarray(occluded) != 128).any(axis=-1)
        assert changed.any()
        expected = (cell_coverage(changed, 7) < 0.5).astype(np.float32)
        assert (mask == expected).all()
    skipped_image, ones = SyntheticOcclusionMask(prob=0.0)(image)
    assert skipped_image is image and (ones == 1).all()


def test_cell_coverage_on_a_known_pattern():
    covered = np.zeros((14, 14), dtype=bool)
    covered[:7, :7] = True
    covered[7:, 7:10] = True
    assert cell_coverage(covered, 2).tolist() == [[1.0, 0.0], [0.0, 3 / 7]]


def test_occlusion_mask_wrapper_transforms_only_the_image_and_refuses_geometry():
    to_gray = OcclusionMaskWrapper(T.Grayscale(num_output_channels=3))
    mask = Image.new("L", (112, 112), 0)
    gray, same_mask = to_gray((noise_image(), mask))
    assert same_mask is mask and np.ptp(np.asarray(gray), axis=-1).max() == 0
    assert isinstance(to_gray(noise_image()), Image.Image)
    with pytest.raises(ConfigError, match="RandomHorizontalFlip"):
        OcclusionMaskWrapper(T.RandomHorizontalFlip())
    with pytest.raises(ConfigError, match="Resize"):
        OcclusionMaskWrapper(T.Compose([T.ColorJitter(0.2), T.Resize(64)]))


def test_flip_with_mask_moves_the_mask_with_the_image():
    image, mask = MedicalMaskOcclusion(prob=1.0, seed=2)(noise_image())
    flipped_image, flipped_mask = RandomHorizontalFlipWithMask(p=1.0)((image, mask))
    assert (np.asarray(flipped_image) == np.asarray(image)[:, ::-1]).all()
    assert (np.asarray(flipped_mask) == np.asarray(mask)[:, ::-1]).all()
    feature_map = np.zeros((7, 7), np.float32)
    feature_map[:, 0] = 1
    _, flipped_map = RandomHorizontalFlipWithMask(p=1.0)((image, feature_map))
    assert (flipped_map[:, 6] == 1).all() and flipped_map[:, :6].sum() == 0
    tensor = torch.arange(6.0).view(1, 2, 3)
    _, flipped_tensor = RandomHorizontalFlipWithMask(p=1.0)((image, tensor))
    assert flipped_tensor.tolist() == [[[2.0, 1.0, 0.0], [5.0, 4.0, 3.0]]]
    assert RandomHorizontalFlipWithMask(p=0.0)((image, mask))[1] is mask


def test_to_tensor_with_mask_scales_pixel_masks_but_not_feature_maps():
    image = noise_image(96, 112)
    pixel_mask = Image.new("L", (96, 112), 255)
    pixel_mask.paste(0, (0, 60, 96, 112))
    image_tensor, mask_tensor = ToTensorWithMask()((image, pixel_mask))
    assert torch.equal(image_tensor, F.to_tensor(image)) and image_tensor.is_contiguous()
    assert mask_tensor.shape == (1, 112, 96) and mask_tensor.dtype == torch.float32
    assert set(mask_tensor.unique().tolist()) == {0.0, 1.0}
    assert mask_tensor[0, 59].eq(1).all() and mask_tensor[0, 60].eq(0).all()

    feature_map = np.ones((7, 7), np.float32)
    feature_map[3, 3], feature_map[0, 0] = 0.0, 0.5
    _, fm_tensor = ToTensorWithMask()((image, feature_map))
    assert fm_tensor.shape == (1, 7, 7)
    assert fm_tensor[0, 3, 3] == 0.0 and fm_tensor[0, 0, 0] == 0.5 and fm_tensor[0, 1, 1] == 1.0

    _, from_bool = ToTensorWithMask()((image, pixel_mask.convert("1")))
    assert torch.equal(from_bool, mask_tensor)
    assert torch.equal(ToTensorWithMask()(image.convert("L")), F.to_tensor(image.convert("L")))


def test_normalize_matches_torchvision():
    tensor = torch.rand(3, 16, 16)
    ours = Normalize((0.5, 0.4, 0.3), (0.2, 0.25, 0.5))(tensor)
    theirs = T.Normalize((0.5, 0.4, 0.3), (0.2, 0.25, 0.5))(tensor)
    assert torch.allclose(ours, theirs) and not torch.equal(ours, tensor)
    with pytest.raises(ConfigError, match="std"):
        Normalize((0.5,), (0.0,))


def test_face_train_transform_outputs_normalised_image_and_unit_mask():
    transform = face_train_transform(seed=4)
    image = noise_image()
    results = [transform(image) for _ in range(200)]
    for image_tensor, mask_tensor in results:
        assert image_tensor.shape == (3, 112, 112) and mask_tensor.shape == (1, 112, 112)
        assert image_tensor.min() >= -1 and image_tensor.max() <= 1
        assert set(mask_tensor.unique().tolist()) <= {0.0, 1.0}
    masked = np.mean([bool((m == 0).any()) for _, m in results])
    assert 0.38 < masked < 0.62
    again = face_train_transform(seed=4)
    for image_tensor, mask_tensor in results[:20]:
        other_image, other_mask = again(image)
        assert torch.equal(image_tensor, other_image) and torch.equal(mask_tensor, other_mask)


class TransformedNoise(Dataset):
    """16 noise images through `transform`, as (image, label, mask) items."""

    def __init__(self, transform):
        self.transform = transform

    def __len__(self) -> int:
        return 16

    def __getitem__(self, index: int):
        image, mask = self.transform(noise_image(seed=index))
        return MaskedItem(image, index, mask)


def test_uint8_output_with_normalize_collate_gives_the_float_batches():
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)
    float_items = DataLoader(TransformedNoise(face_train_transform(mean=mean, std=std, seed=2)),
                             batch_size=8)
    uint8_items = DataLoader(TransformedNoise(face_train_transform(mean=mean, std=std, seed=2,
                                                                   uint8_output=True)),
                             batch_size=8, collate_fn=NormalizeCollate(mean, std))
    image, _, mask = TransformedNoise(face_train_transform(seed=2, uint8_output=True))[0]
    assert image.dtype == mask.dtype == torch.uint8 and set(mask.unique().tolist()) <= {0, 255}
    for (images, labels, masks), (images8, labels8, masks8) in zip(float_items, uint8_items):
        assert images8.dtype == masks8.dtype == torch.float32 and images8.is_contiguous()
        assert torch.allclose(images, images8, atol=1e-6) and torch.equal(masks, masks8)
        assert torch.equal(labels, labels8) and (masks8 == 0).any()


def test_normalize_collate_in_workers_and_feature_map_masks():
    transform = T.Compose([SyntheticOcclusionMask(prob=1.0, seed=3), ToUint8TensorWithMask()])
    collate = NormalizeCollate()
    loader = DataLoader(TransformedNoise(transform), batch_size=8, num_workers=2,
                        collate_fn=collate)
    torch.manual_seed(0)
    batches = list(loader)
    images, labels, masks = batches[0]
    assert images.shape == (8, 3, 112, 112) and images.min() >= -1 and images.max() <= 1
    assert masks.shape == (8, 1, 7, 7) and masks.dtype == torch.float32    # 0..1 kept as is
    assert set(masks.unique().tolist()) <= {0.0, 1.0} and (masks == 0).any()
    assert labels.tolist() == list(range(8))
    assert collate.images(images) is images                              # float passes through
    with pytest.raises(ConfigError, match="std"):
        NormalizeCollate((0.5,), (0.0,))


class SameImage(Dataset):
    def __init__(self, transform):
        self.image, self.transform = noise_image(), transform

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int):
        return torch.from_numpy(np.array(self.transform(self.image)[1]))


def test_seeded_transforms_give_each_dataloader_worker_its_own_stream():
    loader = DataLoader(SameImage(MedicalMaskOcclusion(prob=1.0, seed=0)), batch_size=4,
                        num_workers=2, multiprocessing_context="fork")
    torch.manual_seed(0)
    first, second = list(loader)
    assert not torch.equal(first, second), "both workers drew the same occlusions"
    torch.manual_seed(0)
    assert all(torch.equal(a, b) for a, b in zip(list(loader), (first, second)))


def test_random_occlusion_fills_one_square():
    image = Image.new("RGB", (80, 60), (200, 200, 200))
    occluded = np.asarray(RandomOcclusion(min_size=0.2, max_size=0.5, seed=1)(image))
    rows, cols = np.nonzero((occluded == 0).all(axis=-1))
    height, width = np.ptp(rows) + 1, np.ptp(cols) + 1
    assert height == width and 12 <= height <= 30 and len(rows) == height * width


def test_rect_scale_and_random_sized_rect_crop_sizes():
    image = noise_image(120, 150)
    assert RectScale(112, 96)(image).size == (96, 112)
    same = noise_image(96, 112)
    assert RectScale(112, 96)(same) is same
    assert RectScale(112, 96, interpolation=Image.Resampling.BICUBIC)(image).size == (96, 112)
    crop = RandomSizedRectCrop(112, 112, crop_factor=0.8, seed=0)
    outputs = [np.asarray(crop(image)) for _ in range(5)]
    assert all(o.shape == (112, 112, 3) for o in outputs)
    assert not (outputs[0] == outputs[1]).all()


def test_random_erasing_uses_seed_parameter_names():
    tensor = torch.rand(3, 112, 112)
    torch.manual_seed(0)
    erased = RandomErasing(EPSILON=1.0, mean=(0.1, 0.2, 0.3))(tensor)
    changed = (erased != tensor).any(dim=0)
    assert 0.02 * 112 * 112 * 0.5 <= changed.sum() <= 0.4 * 112 * 112
    assert torch.allclose(erased[:, changed], torch.tensor([0.1, 0.2, 0.3]).view(3, 1))
    assert torch.equal(RandomErasing(EPSILON=0.0)(tensor), tensor)
    with pytest.raises(ConfigError, match="EPSILON"):
        RandomErasing(EPSILON=2.0)
