"""The data layer: synthetic CT, data set layouts and splits, checks, preprocessing cache, patch sampling.

Names are imported lazily (PEP 562) so that ``bench data check`` and preprocessing workers do not pay for torch
and MONAI, which only the patch sampler needs.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Case": "dataset",
    "Dataset": "dataset",
    "canonical_name": "organs",
    "load_dataset": "layouts",
    "parse_labels_file": "layouts",
    "split_cases": "splits",
    "make_splits": "splits",
    "CheckIssue": "validate",
    "CheckReport": "validate",
    "check_dataset": "validate",
    "PreprocessSettings": "preprocess",
    "PreparedCase": "preprocess",
    "prepare_cases": "preprocess",
    "load_prepared": "preprocess",
    "restore_to_original": "preprocess",
    "PatchDataset": "sampler",
    "make_patch_loader": "sampler",
    "generate_dataset": "synth",
    "ensure_default_dataset": "synth",
    "default_data_dir": "synth",
    "write_preview": "preview",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return __all__
