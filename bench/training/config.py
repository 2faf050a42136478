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
from bench.nesting import check_nesting, too_deep_as_error

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

RUN_PRESETS = ("smoke", "kd_gap", "default", "paper")

# The bounds of the preset's numbers, each with its reason (the error message gives it).
MAX_PATCH = 1024
MAX_HU = 100_000.0
MAX_OVERLAP = 0.9
MIN_SPACING_MM, MAX_SPACING_MM = 0.1, 100.0
_INT_LIMITS: dict[str, tuple[int, int, str]] = {  # key -> (lowest, highest, what the low end means)
    "base_channels": (0, 512, "0 (each model's own width) or a width"),
    "batch_size": (1, 1024, "at least 1"),
    "iterations": (1, 10_000_000, "at least 1"),
    "val_every": (1, 10_000_000, "at least 1"),
    "val_cases": (0, 100_000, "0 or more"),
    "sw_batch_size": (1, 1024, "at least 1"),
    "workers": (0, 256, "0 (load in the training process) or more"),
    "profile_warmup": (0, 1000, "0 or more"),
    "profile_runs": (1, 10_000, "at least 1"),
    "folds": (1, 100, "at least 1"),
}
LIMITS = {
    "patch": "a float patch of 1024^3 voxels is 4 GiB before the network's first layer",
    "base_channels": "nnU-Net's first level has 32 channels and deeper levels double it; at 512 one level of a "
    "3-D network no longer fits a GPU",
    "batch_size": "1024 patches of the smallest useful size (32^3) fill a GPU before the network runs",
    "iterations": "670 times the paper's 15,000: weeks of a GPU",
    "val_every": "the bound of iterations",
    "val_cases": "more cases than any public CT data set holds",
    "sw_batch_size": "as batch_size",
    "workers": "more loader processes than the cores of any machine",
    "profile_warmup": "a few passes warm the kernels; 1000 only cost time",
    "profile_runs": "the median of 10,000 passes is as stable as it gets",
    "folds": "with 100 folds a fold of any public data set holds one or two cases",
    "lr": "no upper bound: a rate that diverges is stopped at the first non-finite loss, naming the iteration and "
    "keeping the last good checkpoint",
    "weight_decay": "a decay above 1 removes more than the whole weight each step",
    "window": "CT values lie within about -1024 to 30,000 HU, metal included",
    "overlap": "at 0.9 every voxel lies in 1000 windows already; closer to 1 the window count has no bound",
    "spacing": "CT voxels are 0.3 to 10 mm; 0.1 mm is three times finer than any clinical scanner",
}


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
    # per KD method name: its arguments, under the method's own (``--kd ca:weight=...``); see the smoke preset
    kd_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    # preset keys for the teachers alone (their width, budget), applied before --set; see load_config
    teacher_protocol: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise BenchError naming the first key whose value is out of range.

        Everything a run would otherwise discover after training (profiling settings included) is checked here,
        when the preset is loaded. Every number has an upper bound too (:data:`LIMITS`, each with its reason): an
        absurd value (a 23-digit width, 10^20 iterations) would otherwise fail deep inside torch or run forever.
        """
        checks = [
            ("patch", _is_patch(self.patch), f"three sizes from 1 to {MAX_PATCH} voxels ({LIMITS['patch']})"),
            (
                "inference_patch",
                not self.inference_patch or _is_patch(self.inference_patch),
                f"empty or three sizes from 1 to {MAX_PATCH} voxels ({LIMITS['patch']})",
            ),
            *(_bounded(self, key) for key in _INT_LIMITS),
            ("optimizer", self.optimizer in ("sgd", "adam"), "sgd or adam"),
            ("schedule", self.schedule in ("poly", "cosine", "constant"), "poly, cosine or constant"),
            ("lr", 0 < self.lr < math.inf, f"positive and finite ({LIMITS['lr']})"),
            ("weight_decay", 0 <= self.weight_decay <= 1, f"in [0, 1] ({LIMITS['weight_decay']})"),
            ("momentum", 0 <= self.momentum < 1, "in [0, 1)"),
            ("grad_clip", 0 <= self.grad_clip < math.inf, "0 (no clipping) or positive"),
            ("normalization", self.normalization in ("ct", "zscore", "window"), "ct, zscore or window"),
            (
                "window",
                _is_window(self.window),
                f"[low, high] with low < high, within ±{MAX_HU:g} HU ({LIMITS['window']})",
            ),
            ("amp", self.amp in ("bf16", "fp16", "off"), "bf16, fp16 or off"),
            ("overlap", 0 <= self.overlap <= MAX_OVERLAP, f"in [0, {MAX_OVERLAP:g}] ({LIMITS['overlap']})"),
            ("fg_fraction", 0 <= self.fg_fraction <= 1, "in [0, 1]"),
            (
                "flip_axes",
                set(self.flip_axes) <= {"z", "y", "x"} and len(set(self.flip_axes)) == len(self.flip_axes),
                'distinct axes among "z", "y" and "x"',
            ),
            ("kd_init", self.kd_init in ("scratch", "student"), "scratch or student"),
            ("eval_checkpoint", self.eval_checkpoint in ("best", "last"), "best or last"),
            (
                "model_kwargs",
                _is_kwargs_table(self.model_kwargs),
                "a table of tables of numbers, booleans, strings and lists, e.g. [model_kwargs.unet3d]",
            ),
            (
                "kd_kwargs",
                _is_kwargs_table(self.kd_kwargs),
                "a table of tables of numbers, booleans, strings and lists, e.g. [kd_kwargs.ca]",
            ),
            ("teacher", bool(self.teacher.strip()), "a model name"),
            (
                "teacher_protocol",
                set(self.teacher_protocol) <= set(valid_keys()) - {*TEACHER_SHARED_KEYS, *_NOT_FOR_TEACHER},
                "a table of preset keys for the teachers alone (not "
                f"{', '.join((*TEACHER_SHARED_KEYS, *_NOT_FOR_TEACHER))})",
            ),
            (
                "organs",
                all(_is_organ_list(names) for names in self._organ_lists()),
                "a list of distinct organ names (empty: every organ of the data set), or a table of such lists by "
                "data set name",
            ),
            (
                "spacing",
                self.spacing in ("keep", "median") or _is_spacing(self.spacing),
                f'"keep", "median" or [z,y,x] in mm, each from {MIN_SPACING_MM:g} to {MAX_SPACING_MM:g} '
                f"({LIMITS['spacing']})",
            ),
        ]
        for key, ok, expected in checks:
            if not ok:
                raise BenchError(f"preset key {key} must be {expected}, got {_shown(getattr(self, key))}")

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
    return (
        isinstance(value, list)
        and len(value) == 3
        and all(isinstance(v, int | float) and MIN_SPACING_MM <= v <= MAX_SPACING_MM for v in value)
    )


def _is_window(value: list[float]) -> bool:
    return len(value) == 2 and value[0] < value[1] and all(abs(v) <= MAX_HU for v in value)


def _is_patch(value: list[int]) -> bool:
    return len(value) == 3 and all(1 <= p <= MAX_PATCH for p in value)


def _bounded(config: RunConfig, key: str) -> tuple[str, bool, str]:
    """A check of an integer key against its range in :data:`_INT_LIMITS`."""
    low, high, meaning = _INT_LIMITS[key]
    return key, low <= getattr(config, key) <= high, f"{meaning}, at most {high:,} ({LIMITS[key]})"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:50] + "..."


def _is_organ_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and all(isinstance(name, str) and name.strip() for name in value)
        and len(set(value)) == len(value)
    )


def _is_kwargs_table(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(v, dict) and all(isinstance(k, str) and _is_plain(x) for k, x in v.items()) for v in value.values()
    )


def _is_plain(value: Any) -> bool:
    """A factory argument TOML can hold and JSON write back (the run's hash): no date or time."""
    if isinstance(value, list):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return isinstance(value, bool | int | float | str)


def valid_keys() -> list[str]:
    return [f.name for f in dataclasses.fields(RunConfig)]


def _read_toml(text: str, source: str) -> dict[str, Any]:
    try:
        with too_deep_as_error(source):
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
        check_nesting(value, f"preset key {key} in {source}")
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
        with too_deep_as_error(f"--set {key}"):
            value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


# Keys that decide the data every run of a grid sees (preprocessing, splits, validation cases): a teacher with its own
# protocol (``--set teacher.KEY=VALUE``, an experiment's ``[teacher]`` table) keeps the students' values.
TEACHER_SHARED_KEYS = ("spacing", "normalization", "window", "crop", "folds", "val_cases", "organs")
_NOT_FOR_TEACHER = ("description", "teacher", "teacher_protocol", "kd_init")  # keys a teacher's protocol cannot set
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


def load_config(preset: str, overrides: list[str] | None = None, teacher: bool = False) -> RunConfig:
    """A shipped preset by name, or a TOML file by path, with ``key=value`` overrides applied and validated.

    ``teacher=True`` gives the teachers' protocol: the preset's ``[teacher_protocol]`` table is applied after the
    preset and before the overrides, so that ``--set iterations=2`` still shortens every run of a grid.
    """
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
    if teacher:
        _apply_teacher_protocol(config, source)
    _apply(config, dict(parse_override(o) for o in overrides or []), "--set")
    config.validate()
    return config


def _apply_teacher_protocol(config: RunConfig, source: str) -> None:
    """Apply ``config.teacher_protocol`` to ``config`` itself (which becomes a teacher's protocol; the table is
    emptied, so that it does not enter the teacher's hash twice)."""
    table, config.teacher_protocol = config.teacher_protocol, {}
    if not isinstance(table, dict):
        raise BenchError(f"preset key teacher_protocol in {source} must be a table, got {_shown(table)}")
    refused = sorted(set(table) & {*TEACHER_SHARED_KEYS, *_NOT_FOR_TEACHER})
    if refused:
        raise BenchError(
            f"preset key teacher_protocol in {source} sets {', '.join(refused)}: a teacher's own protocol may change "
            f"training keys only, not {', '.join((*TEACHER_SHARED_KEYS, *_NOT_FOR_TEACHER))}"
        )
    _apply(config, table, f"{source} [teacher_protocol]")


def load_config_with(preset: str, values: dict[str, Any], source: str, teacher: bool = False) -> RunConfig:
    """:func:`load_config` with a table of preset keys applied (an experiment file's ``[overrides]``) and
    validated; a bad key or value is an error naming ``source``. ``teacher``: as for :func:`load_config`."""
    config = load_config(preset, teacher=teacher)
    _apply(config, values, source)
    try:
        config.validate()
    except BenchError as err:
        raise BenchError(f"{source}: {err}") from None
    return config
