"""The output contract shared by every registered network."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from models._errors import ModelError


@dataclass
class SegOutput:
    """What every model's ``forward`` returns, so that any model can be a student or a teacher.

    ``logits`` holds the full-resolution logits first, then each coarser deep-supervision scale.
    ``features`` holds, in the same order, the decoder feature map that feeds each of those heads.
    A model with deep supervision switched off returns a single entry in each list; in eval mode a model keeps
    returning every scale, so that a frozen teacher still feeds multi-scale distillation.
    """

    logits: list[Tensor]
    features: list[Tensor] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.logits:
            raise ModelError("SegOutput needs at least one logits tensor")
        if self.features and len(self.features) != len(self.logits):
            raise ModelError(
                f"SegOutput has {len(self.logits)} logits tensors but {len(self.features)} feature tensors"
            )

    @property
    def main(self) -> Tensor:
        """The full-resolution logits."""
        return self.logits[0]
