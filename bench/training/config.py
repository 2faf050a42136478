"""Run configuration: TOML presets shipped in the package, ``--preset FILE`` and ``--set key=value`` overrides.

Every key of :class:`RunConfig` may appear in a preset; a run stores its fully resolved configuration and a hash
of it, which (with model, KD method, teacher, seed and dataset) identifies the run in the results store.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from bench.errors import BenchError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

RUN_PRESETS = ("smoke", "default", "paper")


@dataclass
class RunConfig:
    """Everything that defines how a network is trained, evaluated and profiled."""

    description: str = ""
    base_channels: int = 0  # 0: each model's own width
    patch: list[int] = field(default_factory=lambda: [64, 128, 128])
    inference_patch: list[int] = field(default_factory=list)  # empty: same as patch
    batch_size: int = 2
    iterations: int = 1000
    val_every: int = 100
    val_cases: int = 5
    optimizer: str = "sgd"  # sgd (Nesterov) or adam
    lr: float = 1e-2
    weight_decay: float = 3e-5
    momentum: float = 0.99
    schedule: str = "poly"  # poly (exponent 0.9), cosine or constant
    grad_clip: float = 12.0  # 0 disables clipping
    spacing: Any = "keep"  # "keep", "median" or [z, y, x] in mm
    normalization: str = "ct"  # ct (nnU-Net), zscore or window
    window: list[float] = field(default_factory=lambda: [-175.0, 250.0])
    crop: bool = True
    fg_fraction: float = 0.33
    augment: bool = True
    flip_axes: list[str] = field(default_factory=lambda: ["y", "x"])  # axes mirrored at random when augmenting
    overlap: float = 0.5
    sw_batch_size: int = 2
    amp: str = "off"  # bf16, fp16 or off
    channels_last: bool = False
    compile: bool = False
    deterministic: bool = True
    workers: int = 0
    profile_warmup: int = 3
    profile_runs: int = 10
    kd_init: str = "scratch"  # scratch or student (start KD from the trained no-KD student)
    teacher: str = "unet3d"
    folds: int = 5
    eval_checkpoint: str = "best"  # best (on validation) or last: the weights a run is evaluated and stored with
    # the organs to train and score, all of them when empty; a list holds for any data set, a table (data set name ->
    # list) only for the data sets it names (see organs_for)
    organs: list[str] | dict[str, list[str]] = field(default_factory=list)
    model_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)  # per model name: factory arguments

    def validate(self) -> None:
        """Raise BenchError naming the first key whose value is out of range.

        Everything a run would otherwise discover after training (profiling settings included) is checked here,
        when the preset is loaded.
        """
        checks = [
            ("patch", len(self.patch) == 3 and all(p > 0 for p in self.patch), "three positive sizes"),
            (
                "inference_patch",
                not self.inference_patch
                or (len(self.inference_patch) == 3 and all(p > 0 for p in self.inference_patch)),
                "empty or three positive sizes",
            ),
            ("base_channels", self.base_channels >= 0, "0 (each model's own width) or a positive width"),
            ("batch_size", self.batch_size >= 1, "at least 1"),
            ("iterations", self.iterations >= 1, "at least 1"),
            ("val_every", self.val_every >= 1, "at least 1"),
            ("val_cases", self.val_cases >= 0, "0 or more"),
            ("optimizer", self.optimizer in ("sgd", "adam"), "sgd or adam"),
            ("schedule", self.schedule in ("poly", "cosine", "constant"), "poly, cosine or constant"),
            ("lr", self.lr > 0 and math.isfinite(self.lr), "positive"),
            ("weight_decay", 0 <= self.weight_decay < math.inf, "0 or more"),
            ("momentum", 0 <= self.momentum < 1, "in [0, 1)"),
            ("grad_clip", 0 <= self.grad_clip < math.inf, "0 (no clipping) or positive"),
            ("normalization", self.normalization in ("ct", "zscore", "window"), "ct, zscore or window"),
            ("window", len(self.window) == 2 and self.window[0] < self.window[1], "[low, high] with low < high"),
            ("amp", self.amp in ("bf16", "fp16", "off"), "bf16, fp16 or off"),
            ("overlap", 0 <= self.overlap < 1, "in [0, 1)"),
            ("sw_batch_size", self.sw_batch_size >= 1, "at least 1"),
            ("fg_fraction", 0 <= self.fg_fraction <= 1, "in [0, 1]"),
            (
                "flip_axes",
                set(self.flip_axes) <= {"z", "y", "x"} and len(set(self.flip_axes)) == len(self.flip_axes),
                'distinct axes among "z", "y" and "x"',
            ),
            ("workers", self.workers >= 0, "0 (load in the training process) or more"),
            ("profile_warmup", self.profile_warmup >= 0, "0 or more"),
            ("profile_runs", self.profile_runs >= 1, "at least 1"),
            ("kd_init", self.kd_init in ("scratch", "student"), "scratch or student"),
            ("eval_checkpoint", self.eval_checkpoint in ("best", "last"), "best or last"),
            ("model_kwargs", _is_kwargs_table(self.model_kwargs), "a table of tables, e.g. [model_kwargs.unet3d]"),
            ("teacher", bool(self.teacher.strip()), "a model name"),
            ("folds", self.folds >= 1, "at least 1"),
            (
                "organs",
                all(_is_organ_list(names) for names in self._organ_lists()),
                "a list of distinct organ names (empty: every organ of the data set), or a table of such lists by "
                "data set name",
            ),
            ("spacing", self.spacing in ("keep", "median") or _is_spacing(self.spacing), '"keep", "median" or [z,y,x]'),
        ]
        for key, ok, expected in checks:
            if not ok:
                raise BenchError(f"preset key {key} must be {expected}, got {getattr(self, key)!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """Short hash of every setting that changes results (the description does not)."""
        data = {k: v for k, v in self.to_dict().items() if k != "description"}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:8]

    def eval_patch(self) -> list[int]:
        return list(self.inference_patch or self.patch)

    def organs_for(self, dataset: str) -> list[str]:
        """The organs to train and score on the data set named ``dataset`` (empty: all of them).

        A table scopes a subset to the data set it was chosen for: the smoke preset's five organs are names of the
        built-in set, and a CPU run on a user's data (which gets the smoke preset) should not fail on them.
        """
        return list(self.organs.get(dataset, [])) if isinstance(self.organs, dict) else list(self.organs)

    def _organ_lists(self) -> list[Any]:
        return list(self.organs.values()) if isinstance(self.organs, dict) else [self.organs]


def _is_spacing(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 3 and all(isinstance(v, int | float) and v > 0 for v in value)


def _is_organ_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and all(isinstance(name, str) and name.strip() for name in value)
        and len(set(value)) == len(value)
    )


def _is_kwargs_table(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(v, dict) and all(isinstance(k, str) for k in v) for v in value.values()
    )


def valid_keys() -> list[str]:
    return [f.name for f in dataclasses.fields(RunConfig)]


def _read_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise BenchError(f"{source} is not valid TOML: {err}") from None


# Element types of the list-valued keys; an int is accepted where a float is expected.
_LIST_ITEMS: dict[str, type] = {"patch": int, "inference_patch": int, "window": float, "flip_axes": str}


def _typed(value: Any, expected: type) -> Any:
    """``value`` as ``expected`` (an int widened to float), or None when it does not have that type."""
    if isinstance(value, bool):
        return value if expected is bool else None
    if expected is float and isinstance(value, int | float):
        return float(value)
    return value if isinstance(value, expected) else None


def _apply(config: RunConfig, values: dict[str, Any], source: str) -> None:
    defaults = RunConfig()
    for key, value in values.items():
        if key not in valid_keys():
            raise BenchError(f"unknown preset key {key!r} in {source}; valid keys: {', '.join(valid_keys())}")
        expected = type(getattr(defaults, key))
        if key in ("spacing", "organs"):  # several shapes; validate() names what is allowed
            setattr(config, key, value)
            continue
        typed = _typed(value, expected)
        if typed is None:
            hint = f" (write {key}=[{value}])" if expected is list and isinstance(value, str) else ""
            raise BenchError(f"preset key {key} in {source} must be {expected.__name__}{hint}, got {value!r}")
        if key in _LIST_ITEMS:
            item = _LIST_ITEMS[key]
            typed = [_typed(v, item) for v in value]
            if any(v is None for v in typed):
                raise BenchError(f"preset key {key} in {source} must be a list of {item.__name__}s, got {value!r}")
        setattr(config, key, typed)


def parse_override(item: str) -> tuple[str, Any]:
    """``key=value`` with a TOML value (``iterations=500``, ``patch=[32,64,64]``); bare words are strings."""
    if "=" not in item:
        raise BenchError(f"--set takes key=value, got {item!r}")
    key, raw = (s.strip() for s in item.split("=", 1))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


# Keys that decide the data every run of a grid sees (preprocessing, splits, validation cases): a teacher with its own
# protocol (``--set teacher.KEY=VALUE``, an experiment's ``[teacher]`` table) keeps the students' values.
TEACHER_SHARED_KEYS = ("spacing", "normalization", "window", "crop", "folds", "val_cases", "organs")
TEACHER_PREFIX = "teacher."


def split_teacher_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    """``--set`` items for everyone, and those for the teacher alone (``teacher.iterations=1600``, prefix dropped)."""
    shared = [o for o in overrides if not o.strip().startswith(TEACHER_PREFIX)]
    own = [o.strip()[len(TEACHER_PREFIX) :] for o in overrides if o.strip().startswith(TEACHER_PREFIX)]
    return shared, own


def check_teacher_config(students: RunConfig, teacher: RunConfig, source: str) -> None:
    """A teacher's own protocol may change how it trains, never the data: see ``TEACHER_SHARED_KEYS``."""
    for key in TEACHER_SHARED_KEYS:
        if getattr(teacher, key) != getattr(students, key):
            raise BenchError(
                f"{source}: the teacher's {key} ({getattr(teacher, key)!r}) must equal the students' "
                f"({getattr(students, key)!r}); a teacher's own protocol may change training keys only, not "
                f"{', '.join(TEACHER_SHARED_KEYS)}"
            )


def load_config(preset: str, overrides: list[str] | None = None) -> RunConfig:
    """A shipped preset by name, or a TOML file by path, with ``key=value`` overrides applied and validated."""
    if preset in RUN_PRESETS:
        text = resources.files("bench.presets").joinpath(f"{preset}.toml").read_text()
        source = f"preset {preset}"
    else:
        path = Path(preset)
        if not path.is_file():
            raise BenchError(f"--preset {preset!r} is neither a shipped preset ({', '.join(RUN_PRESETS)}) nor a file")
        try:
            text, source = path.read_text(encoding="utf-8"), str(path)
        except UnicodeDecodeError as err:
            raise BenchError(f"--preset {path} is not UTF-8 text ({err.reason} at byte {err.start})") from None
        except OSError as err:
            raise BenchError(f"--preset {path} cannot be read: {err.strerror or err}") from None
    config = RunConfig()
    _apply(config, _read_toml(text, source), source)
    _apply(config, dict(parse_override(o) for o in overrides or []), "--set")
    config.validate()
    return config


def load_config_with(preset: str, values: dict[str, Any], source: str) -> RunConfig:
    """:func:`load_config` with a table of preset keys applied (an experiment file's ``[overrides]``) and
    validated; a bad key or value is an error naming ``source``."""
    config = load_config(preset)
    _apply(config, values, source)
    try:
        config.validate()
    except BenchError as err:
        raise BenchError(f"{source}: {err}") from None
    return config
