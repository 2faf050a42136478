"""Registry of knowledge-distillation losses for 3D segmentation.

Every module in this package registers its methods when imported; this file imports them all, so adding a
method means adding one file. Third-party packages can add methods through the ``segkd_bench.kd_methods``
entry-point group. Methods know only the ``models.SegOutput`` contract, never a concrete network.
"""

from __future__ import annotations

from kd_methods._errors import KDMethodError
from kd_methods._registry import (
    KDMethodInfo,
    UnknownKDMethodError,
    available_kd_methods,
    create_kd_method,
    kd_method_info,
    register_kd_method,
)
from models._plugins import import_modules_and_plugins

__all__ = [
    "KDMethodError",
    "KDMethodInfo",
    "UnknownKDMethodError",
    "available_kd_methods",
    "create_kd_method",
    "kd_method_info",
    "register_kd_method",
]


import_modules_and_plugins(__name__, __path__, "segkd_bench.kd_methods")
