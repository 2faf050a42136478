"""Registry of 3D segmentation networks.

Every module in this package registers its networks when imported; this file imports them all, so adding a
model means adding one file. Third-party packages can add models through the ``segkd_bench.models`` entry-point
group (each entry point names a module to import).
"""

from __future__ import annotations

from models._errors import ModelError
from models._output import SegOutput
from models._plugins import import_modules_and_plugins
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


import_modules_and_plugins(__name__, __path__, "segkd_bench.models")
