"""Small helpers shared by the network files."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from models._errors import ModelError
from models._output import SegOutput


def resolve_channels(
    channels: Sequence[int] | None, base_channels: int | None, default: Sequence[int], multipliers: Sequence[int]
) -> list[int]:
    """Channel list from an explicit ``channels`` list, or ``base_channels`` times ``multipliers``, or ``default``."""
    if channels is not None and base_channels is not None:
        raise ModelError("give either channels=[...] or base_channels=, not both")
    if channels is not None:
        resolved = [int(c) for c in channels]
        if len(resolved) != len(default):
            raise ModelError(f"channels needs {len(default)} entries, got {len(resolved)}")
    elif base_channels is not None:
        resolved = [int(base_channels) * m for m in multipliers]
    else:
        resolved = list(default)
    if any(c < 1 for c in resolved):
        raise ModelError(f"channel counts must be positive, got {resolved}")
    return resolved


def encode(x: Tensor, encoders: Sequence[nn.Module], pool: nn.Module) -> list[Tensor]:
    """U-Net encoder pass: each level's output (finest first), pooling between levels."""
    skips = []
    for i, encoder in enumerate(encoders):
        x = encoder(x if i == 0 else pool(x))
        skips.append(x)
    return skips


def decode(x: Tensor, skips: Sequence[Tensor], ups: Sequence[nn.Module], decoders: Sequence[nn.Module]) -> list[Tensor]:
    """U-Net decoder pass: from the bottleneck ``x`` up, concatenating [skip, up(x)] at each level.

    ``skips`` are in encoder order (finest first); returns the decoder features finest first.
    """
    features = []
    for up, decoder, skip in zip(ups, decoders, reversed(skips)):
        x = decoder(torch.cat([skip, up(x)], dim=1))
        features.append(x)
    return features[::-1]


def heads_output(heads: Sequence[nn.Module], features: list[Tensor], deep_supervision: bool) -> SegOutput:
    """Apply 1x1x1 heads (finest first) to decoder features (finest first); only the finest without supervision."""
    if not deep_supervision:
        return SegOutput([heads[0](features[0])], [features[0]])
    return SegOutput([head(f) for head, f in zip(heads, features)], features)


def kaiming_fan_out_init(model: nn.Module) -> None:
    """He-normal weights (fan-out, ReLU gain) and zero biases for every (transposed) convolution.

    ACF-BCKD's ``MonaiSegmentor`` initialises every backbone this way (mmengine ``KaimingInit`` on ``_ConvNd`` and
    ``_ConvTransposeNd``); its norms keep PyTorch's defaults (weight 1, bias 0).
    """
    for m in model.modules():
        if isinstance(m, nn.Conv3d | nn.ConvTranspose3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
