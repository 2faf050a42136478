"""Parsers for the CLI's list-valued arguments, raising BenchError with the argument's name."""

from __future__ import annotations

from bench.errors import BenchError


def _parse_numbers(text: str, arg: str, kind: type, what: str, length: int | None, positive: bool) -> list:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise BenchError(f"{arg} takes comma-separated {what}, got {text!r}") from None
    if not values or (length is not None and len(values) != length):
        need = f"{length} comma-separated numbers" if length else "at least one number"
        raise BenchError(f"{arg} needs {need}, got {text!r}")
    if positive and any(v <= 0 for v in values):
        raise BenchError(f"{arg} values must be positive, got {text!r}")
    return values


def parse_int_list(text: str, arg: str, length: int | None = None, positive: bool = True) -> list[int]:
    """``"64,128,128"`` -> ``[64, 128, 128]``; ``arg`` names the option in the error message."""
    return _parse_numbers(text, arg, int, "whole numbers", length, positive)


def parse_float_list(text: str, arg: str, length: int, positive: bool = True) -> list[float]:
    """``"2.5,0.8,0.8"`` -> ``[2.5, 0.8, 0.8]``; ``arg`` names the option in the error message."""
    return _parse_numbers(text, arg, float, "numbers", length, positive)


def parse_name_list(text: str, arg: str) -> list[str]:
    """``"lcovnet, unet3d"`` -> ``["lcovnet", "unet3d"]``; empty entries are an error."""
    names = [n.strip() for n in text.split(",")]
    if not names or any(not n for n in names):
        raise BenchError(f"{arg} takes comma-separated names, got {text!r}")
    return names
