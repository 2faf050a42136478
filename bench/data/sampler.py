"""Random training patches from the preprocessing cache, nnU-Net style, as an endless stream of batches.

A fixed share of patches (default 1/3, every third one) is forced to contain foreground: a class present in the case
is picked uniformly, then one of its voxels (from the ``locations.npy`` written at preprocessing), and the patch is
placed at random around it. Volumes smaller than the patch are padded (image with the case's minimum, label with
background). Every random choice comes from one numpy Generator per (seed, rank, DataLoader worker), so the same seed
and worker count give the same batches and different DDP ranks draw different patches.

Augmentation is a few numpy/torch ops rather than MONAI dictionary transforms: on 48x64x64 CPU patches MONAI's
RandFlipd took ~30 ms, RandGaussianNoised ~23 ms and RandAffined (image + label) ~250 ms per sample because of
MetaTensor bookkeeping, while ``torch.flip``, numpy noise and one ``affine_grid``/``grid_sample`` pair take
~0.1, ~2 and ~40 ms. MONAI still builds the rotation and scaling matrices.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms.utils import create_rotate, create_scale
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from bench.data.preprocess import PreparedCase
from bench.errors import BenchError

# Augmentation strengths, after nnU-Net's defaults (rotation mostly in-plane for anisotropic CT).
P_AFFINE = 0.2
ROTATE_IN_PLANE_RAD = np.deg2rad(15.0)
ROTATE_OUT_OF_PLANE_RAD = np.deg2rad(5.0)
SCALE_RANGE = (0.85, 1.15)
FLIP_AXES = ("y", "x")  # the default, as the LCOV-Net reference configuration; never superior/inferior
_ARRAY_AXIS = {"z": 0, "y": 1, "x": 2}
P_BRIGHTNESS, BRIGHTNESS = 0.15, (0.9, 1.1)
P_NOISE, NOISE_STD = 0.1, (0.0, 0.1)


class PatchDataset(IterableDataset):
    """Endless random patches ``{"image": FloatTensor[C, D, H, W], "label": LongTensor[D, H, W]}``."""

    def __init__(
        self,
        prepared_cases: Sequence[PreparedCase],
        patch_size: Sequence[int],
        fg_fraction: float = 1 / 3,
        augment: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        flip_axes: Sequence[str] = FLIP_AXES,
    ) -> None:
        super().__init__()
        self.cases = list(prepared_cases)
        if not self.cases:
            raise BenchError("no preprocessed cases to draw patches from")
        unlabelled = [c.case_id for c in self.cases if c.label_npy is None]
        if unlabelled:
            raise BenchError(f"training patches need labels; unlabelled: {', '.join(unlabelled[:5])}")
        self.patch_size = tuple(int(p) for p in patch_size)
        if len(self.patch_size) != 3 or min(self.patch_size) < 1:
            raise BenchError(f"patch size needs three positive sizes (z,y,x), got {list(patch_size)}")
        if not 0 <= fg_fraction <= 1:
            raise BenchError(f"the foreground fraction must lie in [0, 1], got {fg_fraction}")
        if not 0 <= rank < world_size:
            raise BenchError(f"rank {rank} is outside world size {world_size}")
        if not set(flip_axes) <= set(_ARRAY_AXIS):
            raise BenchError(f"flip axes must be among z, y and x, got {list(flip_axes)}")
        self.flip_axes = [_ARRAY_AXIS[a] for a in flip_axes]
        self.fg_fraction = Fraction(fg_fraction).limit_denominator(1000)
        self.augment, self.seed, self.rank = augment, seed, rank
        self.metas = [json.loads(Path(c.meta_json).read_text()) for c in self.cases]
        self._open: dict[int, tuple[np.ndarray, np.ndarray, dict[int, np.ndarray]]] = {}

    def __getstate__(self) -> dict:
        # Memory maps stay in the process that opened them; workers open their own.
        return {**self.__dict__, "_open": {}}

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        rng = np.random.default_rng([self.seed, self.rank, info.id if info else 0])
        i = 0
        while True:
            yield self.sample(rng, forced=self.is_forced(i))
            i += 1

    def is_forced(self, i: int) -> bool:
        """Whether the ``i``-th patch of a stream must contain foreground: exactly ``fg_fraction`` of them do."""
        f = self.fg_fraction
        return (i + 1) * f.numerator // f.denominator > i * f.numerator // f.denominator

    def sample(self, rng: np.random.Generator, forced: bool) -> dict[str, torch.Tensor]:
        """One patch of a random case; with ``forced`` it contains a voxel of a random foreground class."""
        index = int(rng.integers(len(self.cases)))
        image, label, by_class = self._arrays(index)
        voxel = None
        if forced and by_class:
            classes = sorted(by_class)
            rows = by_class[classes[int(rng.integers(len(classes)))]]
            voxel = rows[int(rng.integers(len(rows)))]
        starts = []
        for axis, (dim, ps) in enumerate(zip(label.shape, self.patch_size)):
            lo, hi = min(0, dim - ps), max(0, dim - ps)
            start = int(rng.integers(lo, hi + 1)) if voxel is None else int(voxel[axis]) - int(rng.integers(ps))
            starts.append(min(max(start, lo), hi))
        img, lab = _crop(image, label, starts, self.patch_size, self.metas[index]["pad_value"])
        if self.augment:
            img, lab = self._augment(rng, img, lab, self.metas[index]["spacing"])
        return {"image": torch.from_numpy(img), "label": torch.from_numpy(lab.astype(np.int64))}

    def _arrays(self, index: int) -> tuple[np.ndarray, np.ndarray, dict[int, np.ndarray]]:
        if index not in self._open:
            case, meta = self.cases[index], self.metas[index]
            image = np.load(case.image_npy, mmap_mode="r")
            label = np.load(case.label_npy, mmap_mode="r")
            locs = np.load(Path(case.meta_json).parent / meta["class_locations"])
            by_class = {int(v): locs[locs[:, 0] == v, 1:] for v in np.unique(locs[:, 0])}
            self._open[index] = (image, label, by_class)
        return self._open[index]

    def _augment(
        self, rng: np.random.Generator, img: np.ndarray, lab: np.ndarray, spacing: Sequence[float]
    ) -> tuple[np.ndarray, np.ndarray]:
        if rng.random() < P_AFFINE:
            angles = (  # about x, y, z: the last one turns the axial plane
                rng.uniform(-ROTATE_OUT_OF_PLANE_RAD, ROTATE_OUT_OF_PLANE_RAD),
                rng.uniform(-ROTATE_OUT_OF_PLANE_RAD, ROTATE_OUT_OF_PLANE_RAD),
                rng.uniform(-ROTATE_IN_PLANE_RAD, ROTATE_IN_PLANE_RAD),
            )
            img, lab = rotate_scale(img, lab, spacing, angles, rng.uniform(*SCALE_RANGE))
        for axis in self.flip_axes:
            if rng.random() < 0.5:
                img, lab = np.flip(img, axis + 1), np.flip(lab, axis)
        img = np.ascontiguousarray(img, dtype=np.float32)
        if rng.random() < P_BRIGHTNESS:
            img *= np.float32(rng.uniform(*BRIGHTNESS))
        if rng.random() < P_NOISE:
            img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(*NOISE_STD))
        return img, np.ascontiguousarray(lab)


def make_patch_loader(
    prepared_cases: Sequence[PreparedCase],
    patch_size: Sequence[int],
    batch_size: int,
    seed: int,
    augment: bool = True,
    workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
    fg_fraction: float = 1 / 3,
    pin_memory: bool = False,
    flip_axes: Sequence[str] = FLIP_AXES,
) -> Iterator[dict[str, torch.Tensor]]:
    """An endless iterator of batches ``{"image": [B, C, D, H, W], "label": [B, D, H, W]}``.

    Deterministic for a given seed and ``workers`` (workers hand batches over in turn); ``rank`` and ``world_size``
    give each DDP process its own stream of patches.
    """
    if batch_size < 1:
        raise BenchError(f"batch size must be at least 1, got {batch_size}")
    dataset = PatchDataset(prepared_cases, patch_size, fg_fraction, augment, seed, rank, world_size, flip_axes)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        collate_fn=_collate,
    )
    return iter(loader)


def _collate(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack with numpy: ``torch.stack`` runs an OpenMP loop that took 60 ms instead of 0.6 ms for two 32x48x48
    patches on a busy 2-core CI machine with 2 torch threads (the default collate uses it in the training process)."""
    return {key: torch.from_numpy(np.stack([s[key].numpy() for s in samples])) for key in samples[0]}


def _crop(
    image: np.ndarray, label: np.ndarray, starts: list[int], size: tuple[int, ...], pad_value: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """The patch at ``starts`` (which may be negative or run past the end), padded where it leaves the volume."""
    src = tuple(slice(max(s, 0), min(s + p, d)) for s, p, d in zip(starts, size, label.shape))
    dst = tuple(slice(a.start - s, a.stop - s) for a, s in zip(src, starts))
    lab = np.zeros(size, np.uint8)
    lab[dst] = label[src]
    if all(s == slice(0, p) for s, p in zip(dst, size)):
        return np.array(image[(slice(None), *src)], dtype=np.float32), lab
    img = np.empty((image.shape[0], *size), np.float32)
    img[:] = np.asarray(pad_value, np.float32)[:, None, None, None]
    img[(slice(None), *dst)] = image[(slice(None), *src)]
    return img, lab


def rotate_scale(
    img: np.ndarray, lab: np.ndarray, spacing: Sequence[float], angles: Sequence[float], zoom: float
) -> tuple[np.ndarray, np.ndarray]:
    """Rotate by ``angles`` (radians about x, y, z) and magnify by ``zoom`` about the patch centre, in mm space.

    ``img`` is [C, D, H, W], ``lab`` [D, H, W], ``spacing`` (z, y, x); image bilinear with border padding, label
    nearest with background padding.
    """
    # affine_grid works in (x, y, z) normalised coordinates; convert to mm, transform, convert back.
    half_mm = np.array([n * s / 2 for n, s in zip(lab.shape[::-1], spacing[::-1])])
    to_mm, to_norm = np.diag([*half_mm, 1.0]), np.diag([*(1 / half_mm), 1.0])
    transform = to_norm @ create_rotate(3, angles) @ create_scale(3, [1 / zoom] * 3) @ to_mm
    grid = torch.from_numpy(_affine_grid(transform[:3].astype(np.float32), lab.shape))[None]
    image = torch.from_numpy(np.ascontiguousarray(img))[None]
    out_img = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
    label = torch.from_numpy(np.ascontiguousarray(lab, dtype=np.float32))[None, None]
    out_lab = F.grid_sample(label, grid, mode="nearest", padding_mode="zeros", align_corners=False)[0, 0]
    return out_img.numpy(), out_lab.numpy().astype(np.uint8)


def _affine_grid(theta: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``F.affine_grid(theta, align_corners=False)`` for one [D, H, W] volume, in numpy: torch's version took 76 ms per
    32x48x48 patch on a busy 2-core machine (a multi-threaded batched matmul), this one about 1 ms."""
    zs, ys, xs = ((2 * np.arange(n, dtype=np.float32) + 1) / n - 1 for n in shape)
    return (
        xs[None, None, :, None] * theta[:, 0]
        + ys[None, :, None, None] * theta[:, 1]
        + zs[:, None, None, None] * theta[:, 2]
        + theta[:, 3]
    ).astype(np.float32)
