"""Cell formatting for report tables: every missing or non-finite value is shown as ``-``."""

from __future__ import annotations

import math
from typing import Any

MISSING = "-"


def is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return not math.isfinite(float(value))
    except (TypeError, ValueError, OverflowError):
        return True


def num(value: Any, digits: int = 2, signed: bool = False) -> str:
    """``0.81234`` -> ``"0.81"``; integers keep no decimals when ``digits`` is 0; ``None``/NaN -> ``-``."""
    if is_missing(value):
        return MISSING
    return f"{float(value):{'+' if signed else ''}.{digits}f}"


def count(value: Any) -> str:
    """Counts averaged over seeds: ``3.0`` -> ``"3"``, ``2.5`` -> ``"2.5"``."""
    if is_missing(value):
        return MISSING
    value = float(value)
    return str(int(value)) if value.is_integer() else f"{value:.1f}"


def mean_pm(mean: Any, std: Any, digits: int, pm: str = "±") -> str:
    """``"0.8123 ± 0.0100"``; the ``± std`` part is left out when only the std is missing."""
    if is_missing(mean):
        return MISSING
    if is_missing(std):
        return num(mean, digits)
    return f"{num(mean, digits)} {pm} {num(std, digits)}"


def text(value: Any) -> str:
    return MISSING if value is None or (isinstance(value, float) and math.isnan(value)) or value == "" else str(value)
