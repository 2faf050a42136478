"""Name -> class registry for knowledge-distillation losses."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import Tensor, nn

from kd_methods._errors import KDMethodError

if TYPE_CHECKING:
    from models import SegOutput


@dataclass(frozen=True)
class KDMethodInfo:
    """Metadata recorded next to each registered KD method."""

    name: str
    description: str
    reference: str
    cls: type[nn.Module]


_METHODS: dict[str, KDMethodInfo] = {}


class UnknownKDMethodError(KeyError):
    """Raised for an unregistered KD method name; the message lists the registered names."""

    def __str__(self) -> str:
        return str(self.args[0])


def register_kd_method(name: str, *, description: str, reference: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Register an ``nn.Module`` subclass whose ``forward(student_out, teacher_out, target=None)`` returns a loss."""

    def decorator(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _METHODS:
            raise KDMethodError(f"KD method {name!r} is already registered by {_METHODS[name].cls.__module__}")
        _METHODS[name] = KDMethodInfo(name, description, reference, cls)
        return cls

    return decorator


def available_kd_methods(pattern: str = "*") -> list[str]:
    """Registered KD method names matching a shell-style wildcard, sorted."""
    return sorted(n for n in _METHODS if fnmatch.fnmatchcase(n, pattern))


def kd_method_info(name: str) -> KDMethodInfo:
    """Metadata of a registered KD method; raises :class:`UnknownKDMethodError` listing the known names."""
    try:
        return _METHODS[name]
    except KeyError:
        known = ", ".join(available_kd_methods())
        raise UnknownKDMethodError(f"unknown KD method {name!r}; registered methods: {known}") from None


class ComposedKDMethod(nn.Module):
    """Several KD methods in one run (``"ca+ms"``): the loss is the sum of the parts' (already weighted) losses.

    ``seg_loss_weight`` is the smallest of the parts' and ``needs_target`` is true when any part needs labels.
    """

    def __init__(self, parts: dict[str, nn.Module]):
        super().__init__()
        self.parts = nn.ModuleDict(parts)
        self.seg_loss_weight = min(float(p.seg_loss_weight) for p in parts.values())
        self.needs_target = any(bool(p.needs_target) for p in parts.values())

    def forward(self, student_out: SegOutput, teacher_out: SegOutput, target: Tensor | None = None) -> Tensor:
        losses = [part(student_out, teacher_out, target) for part in self.parts.values()]
        return sum(losses[1:], losses[0])


def create_kd_method(
    name: str, student_channels: list[int], teacher_channels: list[int], num_classes: int, **hyperparameters
) -> nn.Module:
    """Build a registered KD method for the given student/teacher feature channels and class count.

    ``name`` may join registered names with ``+`` (``"ca+ms"``) to get a :class:`ComposedKDMethod`. Its
    hyper-parameters go to every part, except a keyword named after a part whose value is a dict, which goes to that
    part only: ``create_kd_method("ca+ms", ..., preset="nnunet", ms={"norm": "global"})``. Unknown parts raise
    :class:`UnknownKDMethodError` naming the part.
    """
    if "+" not in name:
        return kd_method_info(name).cls(
            student_channels=list(student_channels),
            teacher_channels=list(teacher_channels),
            num_classes=num_classes,
            **hyperparameters,
        )
    names = [part.strip() for part in name.split("+")]
    for part in names:
        if part not in _METHODS:
            known = ", ".join(available_kd_methods())
            raise UnknownKDMethodError(f"unknown KD method {part!r} in {name!r}; registered methods: {known}")
    if len(set(names)) != len(names):
        raise KDMethodError(f"KD method {name!r} names a part more than once")
    scoped = {part: hyperparameters.pop(part) for part in names if isinstance(hyperparameters.get(part), dict)}
    parts = {
        part: create_kd_method(
            part, student_channels, teacher_channels, num_classes, **{**hyperparameters, **scoped.get(part, {})}
        )
        for part in names
    }
    return ComposedKDMethod(parts)
