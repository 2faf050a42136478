"""Hand-built student/teacher SegOutputs for the KD-method tests and the golden-value fixture.

No concrete model is involved: logits and features are seeded random tensors with the shapes of a 4-scale decoder.
They are drawn in float64 and then cast: torch's float32 ``randn`` takes a vectorised path on AVX2/AVX-512 CPUs and a
scalar one elsewhere, so the same seed gives different float32 bits per CPU kind, while float64 draws are identical.
"""

from __future__ import annotations

import torch
from torch import Tensor

from kd_methods import create_kd_method
from models import SegOutput

NUM_CLASSES = 4
SIZES = ((16, 32, 32), (8, 16, 16), (4, 8, 8), (2, 4, 4))
STUDENT_CHANNELS = [4, 8, 16, 32]
TEACHER_CHANNELS = [8, 16, 32, 64]
# An nnU-Net-like teacher that pools [1, 2, 2] first, so its coarser scales differ from the student's.
ANISOTROPIC_SIZES = ((16, 32, 32), (16, 16, 16), (8, 8, 8), (4, 4, 4))

# name -> (registry name, hyper-parameters, teacher sizes); one golden value each.
GOLDEN_CONFIGS: dict[str, tuple[str, dict, tuple[tuple[int, int, int], ...]]] = {
    "kd": ("kd", {}, SIZES),
    "kd_tau4": ("kd", {"tau": 4.0}, SIZES),
    "at": ("at", {}, SIZES),
    "fitnet": ("fitnet", {}, SIZES),
    "cwd": ("cwd", {}, SIZES),
    "cwd_features": ("cwd", {"on": "features"}, SIZES),
    "skd": ("skd", {}, SIZES),
    "ifvd": ("ifvd", {}, SIZES),
    "emkd": ("emkd", {}, SIZES),
    "dist": ("dist", {}, SIZES),
    "ca": ("ca", {}, SIZES),
    "ca_nnunet": ("ca", {"preset": "nnunet"}, SIZES),
    "ms": ("ms", {}, SIZES),
    "ms_global": ("ms", {"norm": "global"}, SIZES),
    "ms_none": ("ms", {"norm": "none"}, SIZES),
    "ms_sample": ("ms", {"variant": "sample"}, SIZES),
    "ms_pymic": ("ms", {"variant": "pymic"}, SIZES),
    "ca+ms": ("ca+ms", {}, SIZES),
    "ca+ms_anisotropic_teacher": ("ca+ms", {}, ANISOTROPIC_SIZES),
    "at_anisotropic_teacher": ("at", {}, ANISOTROPIC_SIZES),
    "dkd": ("dkd", {}, SIZES),
    "nkd": ("nkd", {}, SIZES),
    "cirkd": ("cirkd", {"pixel_memory_size": 64, "region_memory_size": 16}, SIZES),
    "reviewkd": ("reviewkd", {}, SIZES),
    "ft_pretraining": ("ft", {}, SIZES),
    "ft": ("ft", {"paraphraser_iterations": 0}, SIZES),
    "acf": ("acf", {}, SIZES),
    "acf_anisotropic_teacher": ("acf", {}, ANISOTROPIC_SIZES),
}


def make_output(
    batch: int,
    channels: list[int],
    sizes: tuple[tuple[int, int, int], ...],
    generator: torch.Generator,
    num_classes: int = NUM_CLASSES,
    requires_grad: bool = False,
    dtype: torch.dtype = torch.float32,
) -> SegOutput:
    """Random logits (std 2, so predictions are not near-uniform) and ReLU features, full resolution first."""

    def draw(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64).to(dtype)

    logits = [2.0 * draw(batch, num_classes, *size) for size in sizes]
    features = [draw(batch, c, *size).relu() + 0.05 for c, size in zip(channels, sizes)]
    for t in (*logits, *features):
        t.requires_grad_(requires_grad)
    return SegOutput(logits=logits, features=features)


def make_target(batch: int, size: tuple[int, int, int], generator: torch.Generator) -> Tensor:
    """Integer labels [B, D, H, W] in blocks of 4 x 4 x 4 voxels, so every class survives down-sampling."""
    coarse = torch.randint(0, NUM_CLASSES, (batch, 1, *(s // 4 for s in size)), generator=generator)
    return torch.nn.functional.interpolate(coarse.float(), size=size, mode="nearest")[:, 0].long()


def make_case(
    batch: int = 2,
    student_channels: list[int] = STUDENT_CHANNELS,
    teacher_channels: list[int] = TEACHER_CHANNELS,
    student_sizes: tuple[tuple[int, int, int], ...] = SIZES,
    teacher_sizes: tuple[tuple[int, int, int], ...] = SIZES,
    seed: int = 1234,
    requires_grad: bool = False,
    dtype: torch.dtype = torch.float32,
) -> tuple[SegOutput, SegOutput, Tensor]:
    """(student, teacher, target) from one seed; student tensors are leaves with ``requires_grad``."""
    gen = torch.Generator().manual_seed(seed)
    student = make_output(batch, student_channels, student_sizes, gen, requires_grad=requires_grad, dtype=dtype)
    teacher = make_output(batch, teacher_channels, teacher_sizes, gen, dtype=dtype)
    return student, teacher, make_target(batch, student_sizes[0], gen)


def golden_losses() -> dict[str, float]:
    """Every ``GOLDEN_CONFIGS`` loss on the fixed seeded case, computed in float64 (adapters initialised from seed 0
    in float32, as in training, then cast: ``uniform_`` initialisation draws the same bits on every CPU kind)."""
    values = {}
    for key, (name, hyperparameters, teacher_sizes) in GOLDEN_CONFIGS.items():
        student, teacher, target = make_case(teacher_sizes=teacher_sizes, dtype=torch.float64)
        torch.manual_seed(0)
        method = create_kd_method(name, STUDENT_CHANNELS, TEACHER_CHANNELS, NUM_CLASSES, **hyperparameters).double()
        with torch.no_grad():
            values[key] = float(method(student, teacher, target))
    return values
