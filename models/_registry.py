"""Name -> factory registry for 3D segmentation networks (modelled on timm's ``register_model``)."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from models._errors import ModelError


@dataclass(frozen=True)
class ModelInfo:
    """Metadata recorded next to each registered factory."""

    name: str
    description: str
    reference: str
    default_patch: tuple[int, int, int]
    stride: tuple[int, int, int]
    factory: Callable[..., nn.Module]
    extra: str | None = None  # optional dependency group needed, e.g. "monai"


_MODELS: dict[str, ModelInfo] = {}


class UnknownModelError(KeyError):
    """Raised for a model name that is not registered; its message lists the registered names."""

    def __str__(self) -> str:
        return str(self.args[0])


def register_model(
    name: str,
    *,
    description: str,
    reference: str,
    default_patch: tuple[int, int, int],
    stride: tuple[int, int, int] | int,
    extra: str | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a factory ``f(in_channels, num_classes, **kwargs) -> nn.Module`` under ``name``."""
    stride3 = (stride, stride, stride) if isinstance(stride, int) else tuple(stride)

    def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ModelError(f"model {name!r} is already registered by {_MODELS[name].factory.__module__}")
        _MODELS[name] = ModelInfo(name, description, reference, tuple(default_patch), stride3, factory, extra)
        return factory

    return decorator


def available_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style wildcard, sorted."""
    return sorted(n for n in _MODELS if fnmatch.fnmatchcase(n, pattern))


def model_info(name: str) -> ModelInfo:
    """Metadata of a registered model; raises :class:`UnknownModelError` listing the known names."""
    try:
        return _MODELS[name]
    except KeyError:
        known = ", ".join(available_models())
        raise UnknownModelError(f"unknown model {name!r}; registered models: {known}") from None


def create_model(name: str, in_channels: int = 1, num_classes: int = 2, **kwargs) -> nn.Module:
    """Build a registered model. ``kwargs`` set width (``channels=[...]`` or ``base_channels=``) and the like."""
    info = model_info(name)
    if in_channels < 1 or num_classes < 2:
        raise ModelError(f"{name}: in_channels must be >= 1 and num_classes >= 2 (got {in_channels}, {num_classes})")
    return info.factory(in_channels=in_channels, num_classes=num_classes, **kwargs)
