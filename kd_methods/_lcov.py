"""Scale and loss weights shared by CA-KD and MS-KD (Zhao et al., IEEE TMI 2023).

Official code (https://github.com/HiLab-git/LCOVNet-and-KD):

| preset   | official code                                         | total loss                                      |
|----------|-------------------------------------------------------|-------------------------------------------------|
| `pymic`  | `pymic/loss/seg/kd.py::MSKDCAKDLoss` @ d861bf7        | 0.8 L_seg + 0.2 sum_s w_s (0.1 CA_s + 0.2 MS_s) |
| `nnunet` | `nnUNetTrainerV2_our.run_iteration` @ 70967d1 (older) | 0.8 L_seg + 0.1 sum w_s CA_s + 0.2 sum w_s MS_s |

so the effective weights are CA 0.02 / MS 0.04 (`pymic`) and CA 0.1 / MS 0.2 (`nnunet`); w = [0.4, 0.2, 0.2, 0.2].
"""

from __future__ import annotations

from kd_methods._errors import KDMethodError

SCALE_WEIGHTS: tuple[float, ...] = (0.4, 0.2, 0.2, 0.2)
SEG_LOSS_WEIGHT = 0.8
KD_WEIGHT_SETS: dict[str, dict[str, float]] = {
    "pymic": {"ca": 0.2 * 0.1, "ms": 0.2 * 0.2},
    "nnunet": {"ca": 0.1, "ms": 0.2},
}


def preset_weight(term: str, preset: str, weight: float | None) -> float:
    """``weight`` if given, else the ``preset``'s effective weight for ``term`` ("ca" or "ms")."""
    if preset not in KD_WEIGHT_SETS:
        raise KDMethodError(f"unknown preset {preset!r} for {term}; choose one of: {', '.join(KD_WEIGHT_SETS)}")
    return KD_WEIGHT_SETS[preset][term] if weight is None else float(weight)
