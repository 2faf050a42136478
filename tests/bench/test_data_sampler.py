"""Patch sampling: shapes, the forced-foreground share, padding, determinism, ranks, augmentation geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from bench.data import sampler
from bench.data.layouts import Case
from bench.data.preprocess import PreprocessSettings, prepare_cases
from bench.data.sampler import PatchDataset, make_patch_loader, rotate_scale
from bench.errors import BenchError


def _case(tmp_path: Path, name: str, shape: tuple[int, int, int], blob: tuple[slice, ...]) -> Case:
    rng = np.random.default_rng(len(name))
    image = rng.normal(0, 1, shape).astype(np.float32) + 5
    label = np.zeros(shape, np.uint8)
    label[blob] = 1
    image[label > 0] += 3
    paths = []
    for arr, suffix in ((image, "_0000.nii.gz"), (label, ".nii.gz")):
        im = sitk.GetImageFromArray(arr)
        im.SetSpacing((1.0, 1.0, 2.0))
        paths.append(tmp_path / f"{name}{suffix}")
        sitk.WriteImage(im, str(paths[-1]))
    return Case(name, [paths[0]], paths[1])


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A big volume with one tiny organ, and a volume smaller than the patch."""
    tmp = tmp_path_factory.mktemp("sampler")
    big = _case(tmp, "big", (24, 64, 64), (slice(10, 13), slice(40, 43), slice(8, 11)))
    small = _case(tmp, "small", (6, 10, 12), (slice(2, 4), slice(3, 6), slice(4, 8)))
    settings = PreprocessSettings(normalization="none", crop=False)
    return prepare_cases([big, small], settings, tmp / "cache", progress=False)


def _has_fg(sample) -> bool:
    return bool((sample["label"] > 0).any())


def test_batches_have_the_documented_shapes_and_dtypes(prepared) -> None:
    batch = next(make_patch_loader(prepared, (8, 16, 16), batch_size=3, seed=0))
    assert batch["image"].shape == (3, 1, 8, 16, 16) and batch["image"].dtype == torch.float32
    assert batch["label"].shape == (3, 8, 16, 16) and batch["label"].dtype == torch.int64


def test_every_third_patch_is_forced_to_contain_foreground(prepared) -> None:
    ds = PatchDataset(prepared[:1], (8, 16, 16), augment=False)
    stream = iter(ds)
    samples = [next(stream) for _ in range(90)]
    forced = [s for i, s in enumerate(samples) if ds.is_forced(i)]
    assert len(forced) == 30 and all(_has_fg(s) for s in forced)
    free = [s for i, s in enumerate(samples) if not ds.is_forced(i)]
    assert sum(_has_fg(s) for s in free) < 15  # a 3x3x3 organ in 24x64x64 is rarely hit by chance
    none = PatchDataset(prepared[:1], (8, 16, 16), fg_fraction=0.0, augment=False)
    assert not any(none.is_forced(i) for i in range(30))
    every = PatchDataset(prepared[:1], (8, 16, 16), fg_fraction=1.0, augment=False)
    stream = iter(every)
    assert all(_has_fg(next(stream)) for _ in range(20))


def test_volume_smaller_than_patch_is_padded_around_the_whole_volume(prepared) -> None:
    ds = PatchDataset(prepared[1:], (8, 16, 16), augment=False)
    pad = ds.metas[0]["pad_value"][0]  # the volume's minimum
    volume = np.load(prepared[1].image_npy)
    stream = iter(ds)
    for _ in range(6):
        s = next(stream)
        image, label = s["image"][0].numpy(), s["label"].numpy()
        assert image.shape == (8, 16, 16)
        assert int((label == 1).sum()) == 2 * 3 * 4  # the whole organ is in every patch
        assert int(np.count_nonzero(image == pad)) >= 8 * 16 * 16 - 6 * 10 * 12
        assert np.isclose(image.sum(), volume.sum() + pad * (8 * 16 * 16 - 6 * 10 * 12), rtol=1e-5)


def test_same_seed_gives_the_same_batches_and_ranks_differ(prepared) -> None:
    def first(seed, rank=0, workers=0, n=3):
        it = make_patch_loader(prepared, (8, 16, 16), 2, seed, workers=workers, rank=rank, world_size=2)
        return [next(it) for _ in range(n)]

    a, b, c, r1 = first(0), first(0), first(1), first(0, rank=1)
    for x, y in zip(a, b):
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["label"], y["label"])
    assert not torch.equal(a[0]["image"], c[0]["image"])
    assert not torch.equal(a[0]["image"], r1[0]["image"])


def test_dataloader_workers_are_deterministic_too(prepared) -> None:
    def first(seed):
        it = make_patch_loader(prepared, (8, 16, 16), 2, seed, workers=2)
        return [next(it)["image"] for _ in range(4)]

    a, b = first(3), first(3)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], a[1])  # the two workers draw different patches


def test_rotation_turns_only_the_axial_plane_and_moves_image_and_label_together() -> None:
    img = np.zeros((1, 5, 9, 9), np.float32)
    img[0, 1, 1, 6] = 1.0
    lab = (img[0] > 0).astype(np.uint8)
    out_img, out_lab = rotate_scale(img, lab, spacing=(2.0, 1.0, 1.0), angles=(0, 0, np.pi / 2), zoom=1.0)
    assert np.argwhere(out_lab).tolist() == [[1, 2, 1]]  # (y, x) = (1, 6) turned 90 degrees about the centre
    assert np.unravel_index(out_img[0].argmax(), out_img[0].shape) == (1, 2, 1)
    same_img, same_lab = rotate_scale(img, lab, spacing=(2.0, 1.0, 1.0), angles=(0, 0, 0), zoom=1.0)
    assert np.array_equal(same_lab, lab) and np.allclose(same_img, img, atol=1e-6)


def test_augmented_patches_keep_labels_valid(prepared) -> None:
    it = make_patch_loader(prepared, (8, 16, 16), 4, seed=0, augment=True, fg_fraction=1.0)
    for _ in range(5):
        batch = next(it)
        assert set(batch["label"].unique().tolist()) <= {0, 1}
        assert torch.isfinite(batch["image"]).all()


def test_flip_axes_mirror_exactly_the_named_axes(prepared, monkeypatch) -> None:
    monkeypatch.setattr(sampler, "P_AFFINE", 0.0)  # only the flips move voxels
    lab = np.zeros((4, 6, 8), np.uint8)
    lab[1, 1, 2] = 1
    for axes, moved in (([], set()), (["y"], {1}), (["y", "x"], {1, 2}), (["z"], {0})):
        ds = PatchDataset(prepared[:1], (8, 16, 16), flip_axes=axes)
        rng, seen = np.random.default_rng(0), set()
        for _ in range(30):
            _, out = ds._augment(rng, lab[None].astype(np.float32), lab.copy(), (2.0, 1.0, 1.0))
            (where,) = np.argwhere(out)
            seen |= {axis for axis, (now, before) in enumerate(zip(where, (1, 1, 2))) if now != before}
        assert seen == moved, axes


def test_bad_arguments_are_clear_errors(prepared) -> None:
    with pytest.raises(BenchError, match="patch size needs three"):
        PatchDataset(prepared, (8, 16))
    with pytest.raises(BenchError, match="rank 2 is outside world size 2"):
        PatchDataset(prepared, (8, 16, 16), rank=2, world_size=2)
    with pytest.raises(BenchError, match="no preprocessed cases"):
        PatchDataset([], (8, 16, 16))
    with pytest.raises(BenchError, match=r"flip axes must be among z, y and x, got \['w'\]"):
        PatchDataset(prepared, (8, 16, 16), flip_axes=["w"])
