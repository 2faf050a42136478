"""Registered model and KD-method names read from the source files, without importing torch.

``bench run`` checks its arguments before the heavy imports so that a mistyped name returns in a fraction of a
second (importing torch alone takes 1.5-2 s on a busy 2-core machine, ``models`` with MONAI and nnU-Net's
architectures more). The registries fill themselves when their modules are imported, so the names are read from the
``@register_model("name", ..., stride=...)`` / ``@register_kd_method("name", ...)`` decorators of the package files
with :mod:`ast` instead. ``tests/bench/test_static_names.py`` keeps this in step with the real registries.

Installed plugins (entry points) register names only when imported, so with any plugin installed the static view is
incomplete and callers get ``None``: the full check after the imports then decides.
"""

from __future__ import annotations

import ast
import importlib.util
from importlib.metadata import entry_points
from pathlib import Path

from bench.errors import BenchError
from bench.networks import check_stride

Stride = tuple[int, int, int] | None  # None: not a literal in the source, checked after the imports


def _package_files(package: str) -> list[Path]:
    """The public modules of ``package``, found without executing its ``__init__``."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return []
    files = []
    for location in spec.submodule_search_locations:
        files += [p for p in sorted(Path(location).glob("*.py")) if not p.name.startswith("_")]
    return files


def _decorator_calls(files: list[Path], decorator: str) -> list[ast.Call]:
    calls = []
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.ClassDef):
                for dec in node.decorator_list:
                    if isinstance(dec, ast.Call) and getattr(dec.func, "id", None) == decorator:
                        calls.append(dec)
    return calls


def _literal_name(call: ast.Call) -> str | None:
    if call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
        return call.args[0].value
    return None


def _stride(call: ast.Call) -> Stride:
    for keyword in call.keywords:
        if keyword.arg == "stride":
            try:
                value = ast.literal_eval(keyword.value)
            except ValueError:
                return None
            return (value,) * 3 if isinstance(value, int) else tuple(value)
    return None


def _static(package: str, decorator: str, group: str) -> dict[str, ast.Call] | None:
    if list(entry_points(group=group)):
        return None
    calls = _decorator_calls(_package_files(package), decorator)
    names = {_literal_name(call): call for call in calls}
    return None if None in names else names


def model_strides() -> dict[str, Stride] | None:
    """Model name -> total stride for every model in ``models/``; None when a plugin or a computed name hides some."""
    calls = _static("models", "register_model", "segkd_bench.models")
    return None if calls is None else {name: _stride(call) for name, call in calls.items()}


def kd_method_names() -> set[str] | None:
    """Every KD method name in ``kd_methods/``; None when a plugin or a computed name hides some."""
    calls = _static("kd_methods", "register_kd_method", "segkd_bench.kd_methods")
    return None if calls is None else set(calls)


def check_model_name(name: str, arg: str, strides: dict[str, Stride] | None) -> None:
    """An unknown model name is an error naming ``arg``; without a static view (``None``) nothing is checked."""
    if strides is not None and name not in strides:
        raise BenchError(f"{arg}: unknown model {name!r}; registered models: {', '.join(sorted(strides))}")


def check_kd_name(kd: str, arg: str, names: set[str] | None) -> None:
    """``none``, a method or methods joined by ``+`` (``ca+ms``); unknown parts are an error naming ``arg``."""
    if names is None or kd == "none":
        return
    for part in kd.split("+"):
        if part not in names:
            raise BenchError(f"{arg}: unknown KD method {part!r}; registered methods: {', '.join(sorted(names))}")


def check_patch_stride(name: str, patch: list[int], strides: dict[str, Stride] | None) -> None:
    """``bench.networks.check_patch`` before the imports, when the stride is a literal in the source."""
    stride = (strides or {}).get(name)
    if stride is not None:
        check_stride(name, patch, stride)
