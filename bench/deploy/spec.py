"""The deployment spec: everything besides the weights that turns a CT into a mask the way a run was evaluated.

``bench run`` writes it as ``preprocessing.json`` in each run directory; ``bench export`` copies it into the JSON
sidecar of an ONNX file. It holds the model and its width settings, the label names, the preprocessing settings
(orientation, spacing, normalisation, crop) with the training set's intensity statistics, and the sliding-window
settings (window, overlap, windows per batch, autocast), and the ids of the run's training and test cases (for
int8 calibration and the export's accuracy check).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.nesting import too_deep_as_error

SPEC_FORMAT = "segkd-bench-deploy/1"


@dataclass
class DeploySpec:
    """How to run one trained network on a new CT (see the module docstring)."""

    model: str
    in_channels: int
    num_classes: int
    labels: dict[int, str]
    preprocessing: dict[str, Any]  # PreprocessSettings as a dict
    patch: list[int]
    overlap: float
    sw_batch_size: int = 1
    amp: str = "off"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    ct_stats: dict | None = None
    run_id: str | None = None
    cases: dict[str, list[str]] = field(default_factory=dict)  # the run's "train" and "test" case ids

    def settings(self):
        """The :class:`bench.data.preprocess.PreprocessSettings` the run was trained and evaluated with."""
        from bench.data.preprocess import PreprocessSettings

        values = dict(self.preprocessing)
        if values.get("target_spacing") is not None:
            values["target_spacing"] = tuple(values["target_spacing"])
        for key in ("window", "channel_norms"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return PreprocessSettings(**values)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["labels"] = {str(k): v for k, v in self.labels.items()}
        return {"format": SPEC_FORMAT, **data}

    @classmethod
    def from_json(cls, data: Any, source: str) -> DeploySpec:
        if not isinstance(data, dict) or data.get("format") != SPEC_FORMAT:
            raise BenchError(f'{source}: not a segkd-bench deployment spec (expected "format": "{SPEC_FORMAT}")')
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in data.items() if k in known}
        try:
            values["labels"] = {int(k): str(v) for k, v in values["labels"].items()}
            spec = cls(**values)
            spec.settings()
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise BenchError(f"{source}: incomplete or malformed deployment spec ({err})") from None
        problem = spec.problem()
        if problem:
            raise BenchError(f"{source}: {problem}")
        return spec

    def problem(self) -> str | None:
        """What makes the spec unusable (a value no run writes: a zero window, an overlap of 1), or None."""
        from bench.training.config import MAX_OVERLAP, MAX_PATCH, MAX_SPACING_MM, MIN_SPACING_MM

        def whole(value: Any, low: int, high: int) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high

        checks = [
            ("model", isinstance(self.model, str) and bool(self.model), "a model name"),
            ("in_channels", whole(self.in_channels, 1, 64), "a whole number from 1 to 64"),
            ("num_classes", whole(self.num_classes, 2, 256), "a whole number from 2 to 256 (label values are 8-bit)"),
            ("patch", isinstance(self.patch, list) and len(self.patch) == 3
             and all(whole(p, 1, MAX_PATCH) for p in self.patch), f"three sizes from 1 to {MAX_PATCH} voxels"),
            ("overlap", isinstance(self.overlap, int | float) and 0 <= self.overlap <= MAX_OVERLAP,
             f"a number in [0, {MAX_OVERLAP:g}]"),
            ("sw_batch_size", whole(self.sw_batch_size, 1, 1024), "a whole number from 1 to 1024"),
            ("amp", self.amp in ("bf16", "fp16", "off"), "bf16, fp16 or off"),
            ("labels", all(0 <= k < 256 for k in self.labels), "label values from 0 to 255"),
            ("model_kwargs", isinstance(self.model_kwargs, dict), "an object"),
            ("preprocessing", _is_spacing(self.settings().target_spacing, MIN_SPACING_MM, MAX_SPACING_MM),
             f"settings with a target_spacing of null or three numbers in [{MIN_SPACING_MM:g}, {MAX_SPACING_MM:g}] mm"),
            ("preprocessing", _is_orientation(self.settings().orientation),
             'settings with an orientation of one letter from each of "LR", "PA" and "SI", e.g. "LPS"'),
            ("ct_stats", not self.settings().needs_ct_stats or _is_ct_stats(self.ct_stats, self.in_channels),
             'the training set\'s statistics, {"channels": [{"mean", "std", "p00_5", "p99_5"} per input channel]}'),
        ]  # fmt: skip
        for key, ok, expected in checks:
            if not ok:
                shown = json.dumps(getattr(self, key), default=str)
                return f"{key} must be {expected}, got {shown[:60]}"
        return None

    def write(self, path: Path) -> None:
        from bench.atomic import atomic_write_json

        atomic_write_json(path, self.to_json())


def _is_spacing(value: Any, low: float, high: float) -> bool:
    numbers = value is not None and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    return value is None or (numbers and len(value) == 3 and all(low <= v <= high for v in value))


def _is_orientation(value: Any) -> bool:
    return isinstance(value, str) and sorted(value.upper().translate(str.maketrans("RAI", "LPS"))) == ["L", "P", "S"]


def _is_ct_stats(value: Any, channels: Any) -> bool:
    """The ``ct`` normalisation's statistics, one finite set per input channel."""
    found = value.get("channels") if isinstance(value, dict) else None

    def finite(stats: Any, key: str) -> bool:
        number = stats.get(key) if isinstance(stats, dict) else None
        if isinstance(number, bool) or not isinstance(number, int | float):
            return False
        return abs(number) < 2**63 if isinstance(number, int) else math.isfinite(number)

    keys = ("mean", "std", "p00_5", "p99_5")
    return isinstance(found, list) and len(found) == channels and all(finite(c, k) for c in found for k in keys)


def read_spec(path: Path, arg: str = "--preprocessing") -> DeploySpec:
    """A spec from a run's ``preprocessing.json`` or an ONNX sidecar, with one-line errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"{arg} {path}: no such file")
    try:
        with too_deep_as_error(f"{arg} {path}"):
            data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BenchError(f"{arg} {path}: not valid JSON ({err})") from None
    return DeploySpec.from_json(data, f"{arg} {path}")


def run_spec(results: Path, run_id: str) -> tuple[DeploySpec, Path]:
    """The spec and the weights file of a complete run in the results store at ``results``."""
    from bench.atomic import refuse_links
    from bench.store_layout import ResultsLayout

    run = ResultsLayout(results).run(run_id)
    refuse_links(run.spec)  # a linked run folder would take the run, and export's record, from outside --results
    if not run.dir.is_dir():
        raise BenchError(f"--run {run_id}: no such run in {results} (see `bench report` for the stored runs)")
    if not run.weights.is_file():
        raise BenchError(
            f"--run {run_id}: the run has no {run.weights.name} (it did not finish; run `bench run` again)"
        )
    if not run.spec.is_file():
        raise BenchError(
            f"--run {run_id}: the run has no {run.spec.name} (recorded by an older bench run); "
            "re-run it with `bench run --force`"
        )
    return read_spec(run.spec, "--run"), run.weights
