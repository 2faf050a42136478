"""Registry of knowledge-distillation losses for 3D segmentation.

Every module in this package registers its methods when imported; this file imports them all, so adding a
method means adding one file. Third-party packages can add methods through the ``segkd_bench.kd_methods``
entry-point group. Methods know only the ``models.SegOutput`` contract, never a concrete network.
"""

from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points

from kd_methods._errors import KDMethodError
from kd_methods._registry import (
    KDMethodInfo,
    UnknownKDMethodError,
    available_kd_methods,
    create_kd_method,
    kd_method_info,
    register_kd_method,
)

__all__ = [
    "KDMethodError",
    "KDMethodInfo",
    "UnknownKDMethodError",
    "available_kd_methods",
    "create_kd_method",
    "kd_method_info",
    "register_kd_method",
]


def _import_all() -> None:
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")
    for ep in entry_points(group="segkd_bench.kd_methods"):
        importlib.import_module(ep.value)


_import_all()
