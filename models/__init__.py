"""Registry of 3D segmentation networks.

Every module in this package registers its networks when imported; this file imports them all, so adding a
model means adding one file. Third-party packages can add models through the ``segkd_bench.models`` entry-point
group (each entry point names a module to import).
"""

from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points

from models._errors import ModelError
from models._output import SegOutput
from models._registry import (
    ModelInfo,
    UnknownModelError,
    available_models,
    create_model,
    model_info,
    register_model,
)

__all__ = [
    "ModelError",
    "ModelInfo",
    "SegOutput",
    "UnknownModelError",
    "available_models",
    "create_model",
    "model_info",
    "register_model",
]


def _import_all() -> None:
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")
    for ep in entry_points(group="segkd_bench.models"):
        importlib.import_module(ep.value)


_import_all()
