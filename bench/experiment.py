"""Experiment files: a whole benchmark grid in one TOML file, checked and resolved to an :class:`Experiment`, and
written back in resolved form (``save_experiment``; loading that file gives an equal object).

::

    description = "CA-KD weight ablation"
    preset = "paper"                    # a shipped preset or a TOML file (relative to this file)
    seeds = [0, 1, 2]
    folds = [0]
    models = ["lcovnet", "nnunet:base_channels=16"]
    kd = ["none", "ca:weight=0.05|0.1|0.2"]   # the component syntax of `bench run` (see bench.components.syntax)

    [overrides]                         # preset keys, as `--set`
    iterations = 5000

    [teacher]                           # optional
    models = ["unet3d"]                 # default: the preset's `teacher` key
    preset = "paper"                    # default: the experiment's preset
    [teacher.overrides]                 # applied after the experiment's [overrides]
    iterations = 10000

Errors are one line naming the file and the key (``experiments/x.toml: kd[1]: ...``).
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.components.syntax import Component, Kind, Sweep, parse_sweeps, unique
from bench.errors import BenchError
from bench.nesting import check_nesting, too_deep_as_error
from bench.training.config import (
    RUN_PRESETS,
    RunConfig,
    load_config,
    load_config_with,
    parse_override,
    split_teacher_overrides,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_KEYS = ("description", "preset", "seeds", "folds", "models", "kd", "overrides", "teacher")
_TEACHER_KEYS = ("models", "preset", "overrides")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")


@dataclass
class Experiment:
    """A resolved experiment: every default made explicit, every component checked."""

    models: list[Sweep]
    kd: list[Sweep]
    teachers: list[Sweep]
    seeds: list[int]
    folds: list[int]
    preset: str  # a shipped preset name or an absolute path
    overrides: dict[str, Any] = field(default_factory=dict)
    teacher_preset: str = ""
    teacher_overrides: dict[str, Any] = field(default_factory=dict)  # the experiment's, then the teacher table's
    description: str = ""

    def model_components(self) -> list[Component]:
        return _flat(self.models)

    def kd_components(self) -> list[Component]:
        return _flat(self.kd)

    def teacher_components(self) -> list[Component]:
        return _flat(self.teachers)

    def swept(self) -> dict[str, tuple[str, ...]]:
        """Canonical text of each component that comes from a sweep -> the swept keys (``("ca.weight",)``)."""
        return {str(c): s.swept for s in (*self.models, *self.kd, *self.teachers) if s.swept for c in s.components}

    def config(self) -> RunConfig:
        return load_config_with(self.preset, self.overrides, "[overrides]")

    def teacher_config(self) -> RunConfig:
        return load_config_with(self.teacher_preset, self.teacher_overrides, "[teacher.overrides]", teacher=True)

    def with_overrides(self, items: list[str]) -> Experiment:
        """The experiment with ``--set`` items on top of its own ``[overrides]``: ``KEY=VALUE`` for students and
        teachers, ``teacher.KEY=VALUE`` for the teachers alone (as on a plain ``bench run``), so that a grid's file
        can be run at another size without being edited; the saved experiment records them."""
        if not items:
            return self
        shared, own = split_teacher_overrides(items)
        load_config(self.preset, shared)  # a bad key or value is an error naming --set
        extra = dict(parse_override(item) for item in shared)
        return replace(
            self,
            overrides={**self.overrides, **extra},
            teacher_overrides={**self.teacher_overrides, **extra, **dict(parse_override(item) for item in own)},
        )


def load_experiment(path: Path | str, check: bool = True) -> Experiment:
    """Read, check and resolve an experiment file. ``check=False`` checks the component syntax only (no torch
    import); with ``check=True`` the names and arguments are checked against the registries too."""
    path = Path(path)
    data = _read(path)
    where = str(path)
    _known(data, _KEYS, where, "")
    teacher = data.get("teacher", {})
    if not isinstance(teacher, dict):
        raise BenchError(f"{where}: teacher must be a table ([teacher]), got {teacher!r}")
    _known(teacher, _TEACHER_KEYS, where, "teacher.")
    preset = _preset(data.get("preset", "default"), path, "preset")
    overrides = _table(data.get("overrides", {}), where, "overrides")
    config = _config(preset, overrides, where, "overrides")
    teacher_preset = _preset(teacher.get("preset", preset), path, "teacher.preset")
    teacher_overrides = {**overrides, **_table(teacher.get("overrides", {}), where, "teacher.overrides")}
    _config(teacher_preset, teacher_overrides, where, "teacher.overrides")
    folds = _ints(data.get("folds", [0]), where, "folds", minimum=0)
    if any(f >= config.folds for f in folds):
        raise BenchError(f"{where}: folds must be below the preset's folds = {config.folds}, got {folds}")
    return Experiment(
        models=_sweeps(data, "models", None, "model", where, check),
        kd=_sweeps(data, "kd", ["none"], "kd", where, check),
        teachers=_sweeps(teacher, "models", [config.teacher], "model", where, check, prefix="teacher."),
        seeds=_ints(data.get("seeds", [0]), where, "seeds", minimum=None),
        folds=folds,
        preset=preset,
        overrides=overrides,
        teacher_preset=teacher_preset,
        teacher_overrides=teacher_overrides,
        description=_string(data.get("description", ""), where, "description"),
    )


def save_experiment(experiment: Experiment, path: Path | str) -> None:
    """Write ``experiment`` as a TOML experiment file (atomically); :func:`load_experiment` reads it back equal."""
    lines = [
        f"description = {_toml(experiment.description)}",
        f"preset = {_toml(experiment.preset)}",
        f"seeds = {_toml(experiment.seeds)}",
        f"folds = {_toml(experiment.folds)}",
        f"models = {_toml([str(s) for s in experiment.models])}",
        f"kd = {_toml([str(s) for s in experiment.kd])}",
        "",
        "[overrides]",
        *(f"{_key(k)} = {_toml(v)}" for k, v in experiment.overrides.items()),
        "",
        "[teacher]",
        f"models = {_toml([str(s) for s in experiment.teachers])}",
        f"preset = {_toml(experiment.teacher_preset)}",
        "",
        "[teacher.overrides]",
        *(f"{_key(k)} = {_toml(v)}" for k, v in experiment.teacher_overrides.items()),
    ]
    from bench.atomic import atomic_write_text  # pandas: only when writing

    atomic_write_text(Path(path), "\n".join(lines) + "\n")


def _flat(sweeps: list[Sweep]) -> list[Component]:
    return unique(c for s in sweeps for c in s.components)


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise BenchError(f"experiment file {path} does not exist")
    try:
        with too_deep_as_error(str(path)):
            return check_nesting(tomllib.loads(path.read_text(encoding="utf-8")), str(path))
    except UnicodeDecodeError as err:
        raise BenchError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    except tomllib.TOMLDecodeError as err:
        raise BenchError(f"{path} is not valid TOML: {err}") from None
    except OSError as err:
        raise BenchError(f"{path} cannot be read: {err.strerror or err}") from None


def _known(data: dict, keys: tuple[str, ...], where: str, prefix: str) -> None:
    for key in data:
        if key not in keys:
            valid = ", ".join(prefix + k for k in keys)
            raise BenchError(f"{where}: unknown key {prefix + key!r}; valid keys: {valid}")


def _preset(value: Any, path: Path, key: str) -> str:
    name = _string(value, str(path), key)
    if name in RUN_PRESETS:
        return name
    file = Path(name) if Path(name).is_absolute() else path.parent / name
    if not file.is_file():
        raise BenchError(f"{path}: {key} {name!r} is neither a shipped preset ({', '.join(RUN_PRESETS)}) nor a file "
                         f"(relative paths start at the experiment file's folder)")  # fmt: skip
    return str(file.resolve())


def _config(preset: str, overrides: dict[str, Any], where: str, key: str) -> RunConfig:
    try:
        return load_config_with(preset, overrides, f"[{key}]")
    except BenchError as err:
        raise BenchError(f"{where}: {err}") from None


def _table(value: Any, where: str, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BenchError(f"{where}: {key} must be a table ([{key}]), got {value!r}")
    return dict(value)


def _string(value: Any, where: str, key: str) -> str:
    if not isinstance(value, str):
        raise BenchError(f"{where}: {key} must be a string, got {value!r}")
    return value


def _ints(value: Any, where: str, key: str, minimum: int | None) -> list[int]:
    ok = isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    if not ok or (minimum is not None and any(v < minimum for v in value)):
        low = f" >= {minimum}" if minimum is not None else ""
        raise BenchError(f"{where}: {key} must be a non-empty list of integers{low}, e.g. [0, 1, 2], got {value!r}")
    if len(set(value)) != len(value):
        raise BenchError(f"{where}: {key} repeats a value: {value}")
    return list(value)


def _sweeps(
    data: dict, key: str, default: list[str] | None, kind: Kind, where: str, check: bool, prefix: str = ""
) -> list[Sweep]:
    if key not in data and default is None:
        raise BenchError(f'{where}: missing key {prefix}{key} (a list such as ["lcovnet"])')
    items = data.get(key, default)
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        raise BenchError(f"{where}: {prefix}{key} must be a non-empty list of strings, e.g. [\"lcovnet\"], "
                         f"got {items!r}")  # fmt: skip
    sweeps = []
    for i, text in enumerate(items):
        arg = f"{where}: {prefix}{key}[{i}]"
        if check:
            from bench.components.factory_args import resolve_sweeps

            found = resolve_sweeps(text, kind, arg)
        else:
            found = parse_sweeps(text, kind, arg)
        if len(found) != 1:
            raise BenchError(f'{arg}: one entry per list item (write ["a", "b"], not ["a,b"]), got {text!r}')
        sweeps.append(found[0])
    return sweeps


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _toml(key)


def _toml(value: Any) -> str:
    """A TOML value for the types an experiment holds."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")  # JSON strings are TOML strings
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML form for {type(value).__name__}: {value!r}")
