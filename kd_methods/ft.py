"""Factor Transfer: a paraphraser trained on the teacher's feature, a translator on the student's, L1 on factors."""

from __future__ import annotations

from itertools import pairwise
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kd_methods._align import feature_pair_at, single_scale
from kd_methods._base import KDMethod
from kd_methods._errors import KDMethodError
from kd_methods._registry import register_kd_method

if TYPE_CHECKING:
    from models import SegOutput


def conv_stack(channels: list[int], *, transpose: bool = False, batch_norm: bool = False) -> nn.Sequential:
    """3x3x3 convolutions (stride 1, padding 1) between consecutive ``channels``, each followed by an optional
    BatchNorm and LeakyReLU(0.1): the paraphraser's and translator's building block."""
    conv = nn.ConvTranspose3d if transpose else nn.Conv3d
    layers: list[nn.Module] = []
    for c_in, c_out in pairwise(channels):
        layers += [conv(c_in, c_out, 3, 1, 1), nn.BatchNorm3d(c_out) if batch_norm else nn.Identity()]
        layers.append(nn.LeakyReLU(0.1))
    return nn.Sequential(*layers)


def factor(x: Tensor) -> Tensor:
    """A factor L2-normalised over all its C x D x H x W values per sample, flattened to [B, C D H W]."""
    return F.normalize(x.flatten(1), dim=1)


@register_kd_method(
    "ft",
    description="Factor Transfer: L1 between normalised factors of a translator (student) and a paraphraser "
    "(teacher, trained first by reconstruction)",
    reference="Kim, Park, Kwak, NeurIPS 2018, 'Paraphrasing Complex Network: Network Compression via Factor "
    "Transfer', arXiv:1802.04977; MMRazor FTLoss; 3D port: 605671435/ACF-BCKD configs/distill/factor_transfer",
)
class FactorTransfer(KDMethod):
    """L = weight * mean |F_S / ||F_S|| - F_T / ||F_T|| | with F_T = P_enc(f_T), F_S = Tr(f_S) on one decoder scale.

    The paraphraser P (encoder 3 x conv3 C_T -> C_T -> F -> F, decoder 3 x transposed conv3 back to C_T,
    LeakyReLU 0.1, F = round(rate * C_T)) is first trained to reconstruct the teacher feature; the translator Tr
    (3 x conv3 C_S -> C_S -> F -> F with BatchNorm and LeakyReLU) is trained with the student.

    Pre-training stage, owned by the method: for its first ``paraphraser_iterations`` calls (a counter kept as a
    buffer, so it is saved in checkpoints and a resumed run continues where it stopped) the loss is the paraphraser's
    reconstruction MSE, ||P(f_T) - f_T||^2 averaged over values, which trains only the paraphraser (the teacher
    feature is detached) while the student trains on its supervised loss; afterwards the paraphraser is used
    without gradient and the loss is the factor loss above. The paper pre-trains the paraphraser before the student
    starts; with a frozen teacher the paraphraser sees the same kind of batches either way.

    | hyper-parameter        | default | source                                                             |
    |------------------------|---------|--------------------------------------------------------------------|
    | scale                  | 2       | ACF taps the input of unetmod's `up_layer3`                         |
    | rate                   | 0.5     | paper (factor channels = rate x C_T); ACF uses 1                    |
    | paraphraser_iterations | 250     | this package (one nnU-Net epoch); ACF never trains it (0)           |
    | weight                 | 1       | MMRazor FTLoss, ACF config                                          |

    The L1 is MMRazor's (a mean over all values of the normalised factors, p = 1 as in the paper). Not 0 at
    equality (the translator is not the paraphraser's encoder); C_S != C_T is fine (the translator maps to F).
    """

    needs_target = False

    def __init__(
        self,
        student_channels: list[int],
        teacher_channels: list[int],
        num_classes: int,
        scale: int = 2,
        rate: float = 0.5,
        paraphraser_iterations: int = 250,
        weight: float = 1.0,
    ):
        """Build the loss for networks with the given feature channels and class count.

        Args:
            scale: decoder scale distilled (0 = full resolution), capped at the coarsest paired scale.
            rate: factor channels as a share of the teacher's channels. [paper: 0.5]
            paraphraser_iterations: first calls that train the paraphraser by reconstruction (0: none, as ACF).
            weight: factor on the loss (the reconstruction loss while pre-training, then the factor loss).
        """
        super().__init__(student_channels, teacher_channels, num_classes, weight)
        if rate <= 0:
            raise KDMethodError(f"ft: rate must be positive, got {rate}")
        if paraphraser_iterations < 0:
            raise KDMethodError(f"ft: paraphraser_iterations must be >= 0, got {paraphraser_iterations}")
        self.scale = single_scale(student_channels, teacher_channels, scale, "ft")
        c_s, c_t = student_channels[self.scale], teacher_channels[self.scale]
        self.rate = float(rate)
        f = max(1, round(rate * c_t))
        self.paraphraser = nn.ModuleDict(
            {"encoder": conv_stack([c_t, c_t, f, f]), "decoder": conv_stack([f, f, c_t, c_t], transpose=True)}
        )
        self.translator = conv_stack([c_s, c_s, f, f], batch_norm=True)
        self.paraphraser_iterations = int(paraphraser_iterations)
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def extra_repr(self) -> str:
        return f"weight={self.weight:g}, scale={self.scale}, paraphraser_iterations={self.paraphraser_iterations}"

    @property
    def pretraining(self) -> bool:
        """Whether the next call still trains the paraphraser."""
        return int(self.calls) < self.paraphraser_iterations

    def compute(self, student_out: SegOutput, teacher_out: SegOutput, target: Tensor | None) -> Tensor:
        _, f_s, f_t = feature_pair_at(student_out.features, teacher_out.features, self.scale, "ft")
        dtype = self.translator[0].weight.dtype
        f_s, f_t = f_s.to(dtype), f_t.to(dtype)
        pretraining = self.pretraining
        if self.training:
            self.calls += 1
        if pretraining:
            rebuilt = self.paraphraser["decoder"](self.paraphraser["encoder"](f_t))
            return F.mse_loss(rebuilt, f_t)
        with torch.no_grad():
            factor_t = factor(self.paraphraser["encoder"](f_t))
        return F.l1_loss(factor(self.translator(f_s)), factor_t)
