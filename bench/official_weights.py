"""Weights files in the official LCOV-Net and U-Net code's format, converted to our networks' names.

The official code (HiLab-git/LCOVNet-and-KD ``pymic/net/net3d/lcovnet.py::LCOV_Net`` and ``unet_kd.py::UNet_KD``,
PyMIC's ``LCOVNet``, and the nnU-Net-based ``LCOVNet.py`` / ``unet.py::UNet`` of the same repository) names its
layers ``Encode_block1`` … ``segout4`` where ``models/lcovnet.py`` and ``models/unet3d.py`` use module lists, and its
decoders concatenate ``[up, skip]`` where ours concatenate ``[skip, up]``: the first convolution after each
concatenation sees the same two halves in the other order, so its input channels are swapped half for half. Nothing
else differs, so the converted weights give the official network's logits. ``docs/official-weights.md`` lists the
mapping.

A file is taken for an official one when every tensor name in it is an official name of one network; a file with
any name of ours is taken as ours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import Tensor

from bench.errors import BenchError


@dataclass(frozen=True)
class Layout:
    """The official names of one of our networks: ``rules`` map an official name (a full regex match) to ours,
    ``swapped`` matches our names of the convolutions after a concatenation, ``duplicates`` the official names of
    tensors held under another name too."""

    model: str
    label: str
    rules: tuple[tuple[str, str], ...]
    swapped: str
    duplicates: str | None = None

    def our_name(self, key: str) -> str | None:
        """Our name of the official ``key``; None when it has none (not an official name, or a duplicate)."""
        for pattern, template in self.rules:
            match = re.fullmatch(pattern, key)
            if match:
                return template.format(**_values(match))
        return None

    def has(self, key: str) -> bool:
        """Whether ``key`` is one of this layout's official names."""
        return self.our_name(key) is not None or bool(self.duplicates and re.fullmatch(self.duplicates, key))


def _values(match: re.Match) -> dict[str, object]:
    """Template values: ``level`` 0-based; ``index`` the position in our two-convolution block (conv1.i -> i,
    conv2.i -> 4 + i, past the first convolution's activation and dropout)."""
    found = match.groupdict()
    values: dict[str, object] = {"rest": found.get("rest")}
    if found.get("level"):
        values["level"] = int(found["level"]) - 1
    if found.get("conv"):
        values["index"] = 4 * (int(found["conv"]) - 1) + int(found["i"])
    return values


_LACB = r"(?P<rest>(?:conv1|conv2_1|conv2_2)\.\d\.\w+)"  # the LACB-H / LACB-L sub-blocks keep their names
_HEAD = (r"segout(?P<level>[1-4])\.(?P<rest>weight|bias)", "heads.{level}.{rest}")  # segout1 is the coarsest head

LCOVNET = Layout(
    "lcovnet",
    "official LCOV-Net state dict",
    (
        (rf"Encode_block(?P<level>[1-4])\.{_LACB}", "encoders.{level}.{rest}"),
        (rf"Encode_BottleNeck_block5\.{_LACB}", "bottleneck.{rest}"),
        (r"up(?P<level>[1-4])\.conv\.(?P<rest>\d\.\w+)", "ups.{level}.conv.{rest}"),
        (rf"Decode_block(?P<level>[1-4])\.{_LACB}", "decoders.{level}.{rest}"),
        _HEAD,
    ),
    r"decoders\.\d\.conv1\.0\.weight",
    r"up[1-4]\.conv1\.\d\.\w+",  # UnetBlock_Up's `self.conv = self.conv1 = ...`: one module, two names
)

_CONV = r"conv(?P<conv>[12])\.(?P<i>[01])\.(?P<rest>\w+)"  # conv-BN-ReLU-Dropout twice: conv and BN hold tensors

UNET3D = Layout(
    "unet3d",
    "official U-Net (UNet_KD) state dict",
    (
        (rf"Encode_block(?P<level>[1-4])\.{_CONV}", "encoders.{level}.{index}.{rest}"),
        (rf"Encode_BottleNeck_block5\.{_CONV}", "encoders.4.{index}.{rest}"),
        (r"up(?P<level>[1-4])\.up\.(?P<rest>[01]\.\w+)", "ups.{level}.{rest}"),
        (rf"Decode_block(?P<level>[1-4])\.{_CONV}", "decoders.{level}.{index}.{rest}"),
        _HEAD,
    ),
    r"decoders\.\d\.0\.weight",
)

LAYOUTS = (LCOVNET, UNET3D)


def official_layout(keys: list[str]) -> Layout | None:
    """The layout every one of ``keys`` belongs to, if any."""
    for layout in LAYOUTS:
        if keys and all(layout.has(key) for key in keys):
            return layout
    return None


def from_official(layout: Layout, weights: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """``weights`` under our names with the decoders' input halves swapped, and our name -> the file's name."""
    state: dict[str, Tensor] = {}
    names: dict[str, str] = {}
    for key, tensor in weights.items():
        ours = layout.our_name(key)
        if ours is None:
            continue
        if re.fullmatch(layout.swapped, ours):
            half = tensor.shape[1] // 2  # [up, skip] -> [skip, up]
            tensor = torch.cat((tensor[:, half:], tensor[:, :half]), dim=1)
        state[ours], names[ours] = tensor, key
    return state, names


def to_our_names(
    weights: dict[str, Tensor], container: str | None, name: str, ours: set[str], source: str, hint: str = ""
) -> tuple[dict[str, Tensor], str, dict[str, str]]:
    """``weights`` read from ``source`` (nested under ``container``, or bare) for our network ``name`` whose tensor
    names are ``ours``: (the state dict under our names, the format read, our name -> the file's name). A file of
    neither format is an error naming ``source`` and ending with ``hint``."""
    if not ours.isdisjoint(weights):
        kind = {None: "plain state dict", "model": "segkd-bench checkpoint"}.get(container)
        return weights, kind or f"state dict under '{container}'", {key: key for key in weights}
    layout = official_layout(list(weights))
    if layout is None:
        first = ", ".join(repr(key) for key in list(weights)[:2])
        raise BenchError(
            f"{source}: unknown weights format: none of its {len(weights)} tensor names (e.g. {first}) is one of "
            f"{name}'s, nor are they the official LCOV-Net or U-Net names{hint}"
        )
    if layout.model != name:
        raise BenchError(f"{source} holds an {layout.label}, which fits {layout.model}, not {name}{hint}")
    state, names = from_official(layout, weights)
    return state, layout.label + (f" (under '{container}')" if container else ""), names
