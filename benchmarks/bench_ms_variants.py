"""MS-KD's named variants on real networks: how much signal each leaves the student at a 3D patch.

Runs a teacher and a student (``models`` registry, random initialisation) on a smoothed-noise batch and prints, per
variant of ``kd_methods.ms`` and per deep-supervision scale: the divisor of the logits (``n / tau_fn``, the
effective temperature; its median over voxels for the per-voxel norm), the KL at that scale, and the norm of the
gradient of the whole loss on the student's full-resolution logits; then the same gradient with one voxel's
full-resolution student features set to zero (a ReLU-dead voxel), which the unfloored per-voxel norm cannot take.

    python benchmarks/bench_ms_variants.py [--patch 96,96,96] [--batch 2] [--classes 17]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from tabulate import tabulate

import models
from bench.list_args import parse_int_list
from kd_methods import create_kd_method
from kd_methods.ms import VARIANTS, feature_normalised, floored_voxel_norm, sample_norm
from models import SegOutput


def divisor(features: torch.Tensor, norm: str, tau_fn: float, eps: float) -> float:
    """The median over voxels of the number the logits are divided by (``n / tau_fn``)."""
    if norm == "voxel_floor":
        n = floored_voxel_norm(features)
    elif norm == "sample":
        n = sample_norm(features)
    elif norm == "voxel":
        n = features.norm(dim=1, keepdim=True).clamp_min(eps)
    else:
        n = features.norm().clamp_min(eps)
    return float(n.expand(features.shape[0], 1, *features.shape[2:]).median()) / tau_fn


def logit_gradient(method: torch.nn.Module, student: SegOutput, teacher: SegOutput) -> tuple[float, float]:
    """(loss, ||dL/dz_S||) on the student's full-resolution logits."""
    z = student.logits[0].detach().requires_grad_(True)
    loss = method(SegOutput([z, *student.logits[1:]], student.features), teacher)
    (grad,) = torch.autograd.grad(loss, z)
    return float(loss.detach()), float(grad.norm())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patch", default="96,96,96")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--classes", type=int, default=17)
    parser.add_argument("--student", default="lcovnet")
    parser.add_argument("--teacher", default="unet3d")
    args = parser.parse_args()
    patch = parse_int_list(args.patch, "--patch", 3)
    torch.manual_seed(0)
    x = F.avg_pool3d(torch.randn(args.batch, 1, *patch), 5, stride=1, padding=2) * 5
    names = {"student": args.student, "teacher": args.teacher}
    nets = {side: models.create_model(name, 1, args.classes) for side, name in names.items()}
    with torch.no_grad():
        student, teacher = (nets[side].eval()(x) for side in ("student", "teacher"))
    s_ch = [f.shape[1] for f in student.features]
    t_ch = [f.shape[1] for f in teacher.features]
    dead = [f.clone() for f in student.features]
    dead[0][0, :, 0, 0, 0] = 0
    rows = []
    for variant in (*VARIANTS, "voxel"):
        hp = {"variant": "paper", "norm": "voxel"} if variant == "voxel" else {"variant": variant}
        method = create_kd_method("ms", s_ch, t_ch, args.classes, **hp)
        temps = [divisor(f, method.norm, method.tau_fn, method.eps) for f in student.features]
        kls = []
        for z_s, z_t, f_s, f_t in zip(student.logits, teacher.logits, student.features, teacher.features):
            u_s = feature_normalised(z_s, f_s, method.norm, method.tau_fn, method.eps)
            u_t = feature_normalised(z_t, f_t, method.norm, method.tau_fn, method.eps)
            kls.append(float(F.kl_div(F.log_softmax(u_s, 1), F.log_softmax(u_t, 1), reduction="none",
                                      log_target=True).sum(1).mean()))  # fmt: skip
        loss, grad = logit_gradient(method, student, teacher)
        _, dead_grad = logit_gradient(method, SegOutput(student.logits, dead), teacher)
        rows.append([variant, " / ".join(f"{t:.3g}" for t in temps), " / ".join(f"{k:.2e}" for k in kls),
                     f"{loss:.3e}", f"{grad:.3e}", f"{dead_grad:.3e}"])  # fmt: skip
    print(f"{args.student} <- {args.teacher}, batch {args.batch}, patch {'x'.join(map(str, patch))}, "
          f"{args.classes} classes, random initialisation")  # fmt: skip
    headers = ["variant", "divisor per scale", "KL per scale", "loss", "|dL/dz_S|", "|dL/dz_S|, one dead voxel"]
    print(tabulate(rows, headers=headers))


if __name__ == "__main__":
    main()
