"""The record of a finished run, ``summary.json``: built by the trainer, read by the report, the regression gate and
the SQLite index (docs/results-store.md lists its keys).

:class:`RunSummary` holds the keys in the order ``summary.json`` has them, so that a summary read and written
again is the same file. Every key but ``run_id`` may be ``None`` (JSON null: a value that was not measured, or a key
that summaries written before it existed lack; a missing ``fold`` is 0). Reading checks each value's type, that a
Dice lies in [0, 1] and that an HD95 is not negative; a summary that fails is a :class:`BenchError` naming the file
and the key. Keys this version does not know (from a newer one) are left out.
"""

from __future__ import annotations

import functools
import json
import math
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from bench.atomic import to_jsonable
from bench.errors import BenchError
from bench.nesting import too_deep_as_error


@dataclass(frozen=True, kw_only=True)
class RunSummary:
    """One run's ``summary.json``; see the module docstring."""

    # identity
    run_id: str  # the run folder's name (bench.store.make_run_id, bench.grid.plan.cell_run_id)
    model: str | None  # the network with its own arguments in the component syntax (``nnunet:base_channels=16``)
    kd: str | None  # the KD method with its own arguments; ``none`` for a run without KD
    teacher: str | None  # the teacher of a KD run, with its own arguments
    teacher_run: str | None  # the teacher's run id, or ``checkpoint:<file name>`` for --teacher-checkpoint
    seed: int | None  # the training seed
    preset: str | None  # the preset's name (``<preset>-teacher`` for a teacher trained under its own protocol)
    preset_hash: str | None  # RunConfig.hash of the resolved configuration
    dataset: str | None  # the data set's name
    patch: list[int] | None  # the training patch, z y x
    device: str | None  # where the run trained and was evaluated (``cpu``, ``cuda:0``)
    # cost (bench.profiling), of one patch in inference
    latency_device: str | None  # where latency was measured: ``cpu`` or the GPU's name
    params: int | None  # parameters, deep-supervision heads included
    gmacs: float | None  # multiply-accumulates of one forward pass, in G
    uncounted_ops: list[str] | None  # operators the MAC counter had no rule for
    latency_ms_median: float | None  # median time of one forward pass
    latency_ms_p90: float | None  # its 90th percentile
    peak_mem_mb: float | None  # peak memory of one forward pass
    latency_cpu: str | None  # the CPU model latency was measured on
    latency_threads: int | None  # torch threads while timing
    latency_load_avg: float | None  # the 1-minute load average right after timing
    latency_cpu_count: int | None  # logical CPUs of that machine
    # data and protocol
    dataset_synthetic: bool | None  # the built-in procedural set (`bench data synth`), not real patients
    n_train: int | None  # training cases
    n_val: int | None  # validation cases
    n_test: int | None  # test cases
    base_channels: int | None  # the preset's width override; 0: each network at its own width
    whole_volume: list[int] | None  # the volume the whole-CT time was measured on, z y x (None: not measured)
    whole_ct_seconds: float | None  # sliding-window inference over that volume
    # accuracy on the test split (bench.metrics.summarize)
    dice_mean: float | None  # mean over cases of each case's mean foreground Dice
    dice_std: float | None  # its standard deviation over cases
    hd95_mean: float | None  # mean over cases of each case's mean HD95, mm
    hd95_std: float | None  # its standard deviation over cases
    n_cases: int | None  # test cases scored
    n_scored_cases: int | None  # cases with at least one organ scored (not empty in both masks)
    n_missed: int | None  # (case, organ) pairs present in the ground truth, absent from the prediction
    n_false_positive: int | None  # pairs predicted but absent from the ground truth
    n_both_empty: int | None  # pairs absent from both (not scored)
    per_organ: dict[str, Any] | None  # organ name -> its label, Dice, HD95 and counts
    hd95_definition: str | None  # which HD95 (docs/metrics.md)
    empty_mask_policy: str | None  # how empty masks are scored (docs/metrics.md)
    # training
    train_seconds: float | None  # wall time of training, resumed segments added up
    iterations: int | None  # optimiser steps
    best_val_dice: float | None  # the best validation Dice (None: never validated)
    first_step: dict[str, Any] | None  # iteration 1 before any update: losses, kd_grad_norm, optimized_params
    numerics: dict[str, Any] | None  # cpu_capability and threads: what decides floating-point rounding
    kd_hparams: dict[str, Any] | None  # the KD method's scalar settings (per part of a composition)
    model_kwargs: dict[str, Any] | None  # the network's factory arguments, the preset's and its own
    kd_kwargs: dict[str, Any] | None  # the KD method's own arguments
    teacher_kwargs: dict[str, Any] | None  # the teacher's own arguments
    fold: int  # the cross-validation fold (0 in summaries from before folds)
    # provenance
    created: str | None  # when the summary was written, UTC ISO 8601
    torch: str | None  # the torch version

    @classmethod
    def from_dict(cls, data: Any, source: str = "run summary", run_id: str | None = None) -> RunSummary:
        """The summary in ``data`` (a parsed ``summary.json``), type-checked; ``source`` names it in errors and
        ``run_id`` stands in where ``data`` has none."""
        if not isinstance(data, dict):
            raise BenchError(f"{source}: not a JSON object")
        values = {name: data.get(name, _MISSING.get(name)) for name in SUMMARY_KEYS}
        if "run_id" not in data:
            values["run_id"] = run_id
        hints = _hints()
        for name, value in values.items():
            _check(source, name, value, hints[name])
        return cls(**values)

    @classmethod
    def read(cls, path: Path, run_id: str | None = None) -> RunSummary:
        """``path`` read and checked; OSError (FileNotFoundError: not complete) passes, bad content is a
        BenchError naming the file."""
        path = Path(path)
        try:
            with too_deep_as_error(str(path)):
                data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as err:  # invalid JSON or UTF-8
            raise BenchError(f"cannot read {path}: {err}") from None
        return cls.from_dict(data, str(path), run_id)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in SUMMARY_KEYS}

    def to_json(self) -> str:
        """The text of ``summary.json``: indented JSON, NaN and infinities as null."""
        return json.dumps(to_jsonable(self.to_dict()), indent=2, allow_nan=False) + "\n"


SUMMARY_KEYS: tuple[str, ...] = tuple(f.name for f in fields(RunSummary))  # in summary.json order
_MISSING = {"fold": 0}  # what a key absent from an older summary reads as, where not None
_RANGES = {  # bounds of numbers that cannot lie outside them in a valid run
    "dice_mean": (0.0, 1.0),
    "dice_std": (0.0, 1.0),
    "best_val_dice": (0.0, 1.0),
    "hd95_mean": (0.0, math.inf),
    "hd95_std": (0.0, math.inf),
}


@functools.cache
def _hints() -> dict[str, Any]:
    return typing.get_type_hints(RunSummary)


def _check(source: str, name: str, value: Any, hint: Any) -> None:
    if not _matches(value, hint):
        raise BenchError(f"{source}: key {name} holds {_shown(value)}, not {_describe(hint)}")
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        # what the SQLite index stores; a count this large was not written by a run
        raise BenchError(f"{source}: key {name} holds {_shown(value)}, beyond a 64-bit integer")
    if isinstance(value, float) and not math.isfinite(value):  # NaN and infinities are written as null
        raise BenchError(f"{source}: key {name} holds {value!r}, not a finite number")
    low, high = _RANGES.get(name, (None, None))
    if value is not None and low is not None and not low <= value <= high:
        raise BenchError(f"{source}: key {name} holds {value!r}, outside [{low:g}, {high:g}]")


def _matches(value: Any, hint: Any) -> bool:
    """``value`` is of type ``hint``; a float field takes an int (JSON writes 2.0 as 2.0, but older files as 2)."""
    if isinstance(hint, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is Any:
        return True
    if isinstance(value, bool) and hint is not bool:
        return False
    if hint is float:
        return isinstance(value, int | float)
    origin = typing.get_origin(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_matches(v, item) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    return isinstance(value, hint)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"


_NAMES = {str: "text", int: "an integer", float: "a number", bool: "a boolean", type(None): "null"}


def _describe(hint: Any) -> str:
    """``float | None`` -> ``a number or null``."""
    if isinstance(hint, types.UnionType):
        return " or ".join(_describe(arg) for arg in typing.get_args(hint))
    kinds = {list: "a list", dict: "an object"}
    return kinds.get(typing.get_origin(hint)) or _NAMES.get(hint) or str(hint)
