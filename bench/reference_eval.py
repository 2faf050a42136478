"""The gate's exact check of the evaluation path: a committed checkpoint evaluated on the built-in data.

Training is chaotic, inference is not: the same weights on the same preprocessed volume give logits that agree to
~1e-6 on any CPU, far from any argmax tie in practice, so the per-organ Dice and HD95 of a fixed checkpoint on the
built-in synthetic test cases are reproducible. A regression anywhere between reading a CT and scoring it
(preprocessing, sliding window, restoring the geometry, label mapping, metrics) changes them, with no training noise
to hide behind.

The reference lives next to the baseline JSON: ``<baseline>.reference.pt`` holds the weights and the baseline's
``reference`` object holds the run's model, configuration, data set (``null``: the built-in one) and per-case
metrics. It is written by ``bench check --update --reference RUN_ID [--reference-data DIR]``.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

from bench.errors import BenchError

# Where the tolerances come from: identical predictions give identical metrics (float64 sums over integer masks).
# One voxel flipped by a rounding tie would move an organ's Dice by about 2 / (|A| + |B|) >= 1e-4 for organs of
# under 2e4 voxels, so 1e-6 still sees it; HD95 is compared to 1e-6 mm.
DICE_TOLERANCE = 1e-6
HD95_TOLERANCE_MM = 1e-6


def reference_weights_path(baseline: Path) -> Path:
    return baseline.with_suffix(".reference.pt")


def evaluate_reference(reference: dict[str, Any], weights: Path) -> list[dict]:
    """Per-case rows ``{case, label, dice, hd95}`` of the reference checkpoint on its data set's test cases."""
    import torch

    from bench.networks import load_model, model_kwargs
    from bench.pipeline.evaluate import evaluate_test
    from bench.pipeline.inputs import load_checked_dataset, prepare_fold
    from bench.training.config import RunConfig

    if not weights.is_file():
        raise BenchError(f"reference weights {weights} are missing; write them with `bench check --update --reference`")
    with tempfile.TemporaryDirectory(prefix="segkd-reference-") as tmp:
        config = RunConfig(**reference["config"])
        dataset = load_checked_dataset(Path(reference["data"]) if reference.get("data") else None, None)
        inputs = prepare_fold(dataset, config, 0, Path(tmp))
        data = inputs.data
        name = reference["model"]
        kwargs = model_kwargs(name, config)
        model, _ = load_model(name, data.in_channels, data.num_classes, weights, "reference weights", **kwargs)
        frame = evaluate_test(model.eval(), data, inputs.test, config, torch.device("cpu"))
    return [
        {"case": str(r.case), "label": int(r.label), "dice": _finite(r.dice), "hd95": _finite(r.hd95)}
        for r in frame.itertuples()
    ]


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def write_reference(run_dir: Path, baseline: Path, data: Path | None) -> dict[str, Any]:
    """Copy the weights of the run in ``run_dir`` beside ``baseline`` and evaluate them on ``data`` (None: the
    built-in set): the baseline's ``reference`` object."""
    import shutil

    from bench.atomic import atomic_path
    from bench.store_layout import RunPaths
    from bench.training.checkpoint import zip_intact

    run = RunPaths(run_dir)
    run_id = run.run_id
    try:
        config = json.loads(run.config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise BenchError(f"--reference {run_id}: cannot read {run.config}: {err}") from None
    if config.get("kd") != "none" or not run.weights.is_file():
        raise BenchError(f"--reference {run_dir}: needs a complete run without KD (with {run.weights.name})")
    weights = reference_weights_path(baseline)
    with atomic_path(weights, verify=zip_intact) as tmp:
        shutil.copyfile(run.weights, tmp)
    reference = {"run_id": run_id, "model": config["model"], "preset": config["preset"], "config": config["config"],
                 "data": None if data is None else str(Path(data).absolute()), "weights": weights.name}  # fmt: skip
    reference["per_case"] = evaluate_reference(reference, weights)
    return reference


def compare_reference(reference: dict[str, Any], now: list[dict]) -> list[str]:
    """One line per (case, organ) whose Dice or HD95 differs from the reference beyond the tolerances above."""
    expected = {(r["case"], r["label"]): r for r in reference["per_case"]}
    found = {(r["case"], r["label"]): r for r in now}
    problems = [f"{case} label {label}: missing now" for case, label in sorted(set(expected) - set(found))]
    problems += [f"{case} label {label}: not in the reference" for case, label in sorted(set(found) - set(expected))]
    for key in sorted(set(expected) & set(found)):
        for metric, tolerance in (("dice", DICE_TOLERANCE), ("hd95", HD95_TOLERANCE_MM)):
            base, value = expected[key][metric], found[key][metric]
            same = (base is None and value is None) or (
                base is not None and value is not None and abs(base - value) <= tolerance
            )
            if not same:
                problems.append(f"{key[0]} label {key[1]}: {metric} {value} vs reference {base}")
    return problems
