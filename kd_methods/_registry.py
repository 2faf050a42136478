"""Name -> class registry for knowledge-distillation losses."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn


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
            raise ValueError(f"KD method {name!r} is already registered by {_METHODS[name].cls.__module__}")
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


def create_kd_method(
    name: str, student_channels: list[int], teacher_channels: list[int], num_classes: int, **hyperparameters
) -> nn.Module:
    """Build a registered KD method for the given student/teacher feature channels and class count."""
    cls = kd_method_info(name).cls
    return cls(
        student_channels=list(student_channels),
        teacher_channels=list(teacher_channels),
        num_classes=num_classes,
        **hyperparameters,
    )
