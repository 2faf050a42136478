"""``bench export``: a stored run to ONNX (and int8), with its parity check, latency and accuracy on the test split.

Each variant is written as ``model[.int8].onnx`` plus a JSON sidecar ``model[.int8].onnx.json`` (the run's
deployment spec, with what the export measured), and the run directory gets ``export.json``, the record that
``bench report`` shows in its deployment table. Files are written under temporary names and renamed once every
check passed; a failed parity check leaves no file behind.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from bench.data.preprocess import PreparedCase, load_prepared
from bench.deploy.spec import DeploySpec
from bench.errors import BenchError
from bench.run_summary import RunSummary
from bench.store_layout import ResultsLayout

MAX_ABS_LOGIT_DIFF = 1e-3
MIN_ARGMAX_AGREEMENT = 0.999


class ParityError(BenchError):
    """The exported model disagrees with PyTorch beyond the tolerances; exit code 1 like other failed checks."""

    exit_code = 1


@dataclasses.dataclass
class ExportOptions:
    out_dir: Path
    quantize: str | None = None  # None or "int8"
    calibration_patches: int = 16
    warmup: int = 2
    runs: int = 5
    opset: int = 17


def find_prepared(results: Path, spec: DeploySpec, case_ids: list[str]) -> list[PreparedCase]:
    """The run's cached preprocessed cases (same settings and intensity statistics) in the store's cache."""
    cache = ResultsLayout(results).cache
    found = []
    for case_id in case_ids:
        matches = []
        for meta_path in cache.glob(f"{case_id}-*/meta.json"):
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, ValueError, RecursionError):
                continue  # a damaged cached case is not the one asked for; `bench run` builds it again
            if (
                isinstance(meta, dict)
                and meta.get("case_id") == case_id
                and meta.get("settings") == spec.preprocessing
                and meta.get("ct_stats") == spec.ct_stats
            ):
                matches.append(meta_path)
        if not matches:
            raise BenchError(
                f"--run {spec.run_id}: the preprocessed case {case_id} is not in {cache} any "
                "more; run `bench run` again with the same settings to rebuild the cache"
            )
        folder = max(matches, key=lambda p: p.stat().st_mtime).parent
        label = folder / "label.npy"
        label_npy = label if label.is_file() else None
        found.append(PreparedCase(case_id, folder / "image.npy", label_npy, folder / "meta.json"))
    return found


def _timed_ms(fn, warmup: int, runs: int) -> float:
    from bench.profiling.timing import time_forward

    return time_forward(fn, torch.device("cpu"), warmup, runs).median_ms


def _accuracy(segmenter, cases: list[PreparedCase], labels: dict[int, str]) -> dict:
    """Dice/HD95 of ``segmenter`` on prepared test cases, scored in the original geometry as ``bench run`` does."""
    import pandas as pd
    import SimpleITK as sitk

    from bench.data.preprocess import restore_to_original
    from bench.metrics import evaluate_case, summarize

    rows = []
    for case in cases:
        image, _, meta = load_prepared(case)
        pred = segmenter.logits(np.array(image)).argmax(dim=0).to(torch.uint8).numpy()
        restored = sitk.GetArrayFromImage(restore_to_original(pred, meta))
        gt = sitk.ReadImage(meta["source"]["label"])
        rows += evaluate_case(
            case.case_id, restored, sitk.GetArrayFromImage(gt), tuple(reversed(gt.GetSpacing())), labels
        )
    s = summarize(pd.DataFrame(rows))
    return {"dice": s["dice_mean"], "hd95": s["hd95_mean"], "cases": len(cases)}


def export_run(results: Path, run_id: str, options: ExportOptions, progress: bool = True) -> dict:
    """Export the run, check and measure every variant; returns the record also written to ``export.json``."""
    import onnx
    import onnxruntime as ort

    from bench.atomic import atomic_write_json, writable_folder
    from bench.console import Progress
    from bench.deploy.onnx_export import export_onnx
    from bench.deploy.predict import OnnxNetwork, Segmenter, load_torch_model, ort_session
    from bench.deploy.quantize import calibration_patches, quantize_int8
    from bench.deploy.spec import run_spec

    spec, weights = run_spec(results, run_id)
    if not spec.cases.get("test"):
        raise BenchError(f"--run {run_id}: its preprocessing.json names no test cases to check the export on")
    test = find_prepared(results, spec, spec.cases["test"])
    train = find_prepared(results, spec, spec.cases["train"]) if options.quantize else []
    network, _ = load_torch_model(spec, weights, deep_supervision=False)
    fp32_spec = dataclasses.replace(spec, amp="off")
    reference = Segmenter(network, fp32_spec)
    out_dir = writable_folder(options.out_dir, "--out")
    steps = Progress(2 + 2 * bool(options.quantize), "export", "steps", enabled=progress)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=out_dir) as tmp, steps:
        staged = {"fp32": Path(tmp) / "model.onnx"}
        export_onnx(network, spec.in_channels, spec.patch, staged["fp32"], options.opset)
        steps.update()
        if options.quantize:
            quantize_int8(
                staged["fp32"],
                Path(tmp) / "model.int8.onnx",
                calibration_patches(train, spec.patch, options.calibration_patches),
            )
            staged["int8"] = Path(tmp) / "model.int8.onnx"
            steps.update()

        image = np.array(load_prepared(test[0])[0])
        with torch.inference_mode():
            torch_logits = reference.logits(image)
        patch = torch.zeros(1, spec.in_channels, *spec.patch)
        with torch.inference_mode():
            torch_ms = _timed_ms(lambda: network(patch), options.warmup, options.runs)
        variants = {}
        for name, path in staged.items():
            session = ort_session(path)
            onnx_segmenter = Segmenter(OnnxNetwork(session), fp32_spec)
            logits = onnx_segmenter.logits(image)
            feed = {session.get_inputs()[0].name: patch.numpy()}
            variants[name] = {
                "file": f"model{'' if name == 'fp32' else '.' + name}.onnx",
                "size_mb": path.stat().st_size / 2**20,
                "latency_ms_median": _timed_ms(lambda s=session, f=feed: s.run(None, f), options.warmup, options.runs),
                "max_abs_logit_diff": float((logits - torch_logits).abs().max()),
                "argmax_agreement": float((logits.argmax(0) == torch_logits.argmax(0)).double().mean()),
                "parity_case": test[0].case_id,
                **_accuracy(onnx_segmenter, test, spec.labels),
            }
            steps.update()
        steps.close()
        fp32 = variants["fp32"]
        if fp32["max_abs_logit_diff"] >= MAX_ABS_LOGIT_DIFF or fp32["argmax_agreement"] < MIN_ARGMAX_AGREEMENT:
            raise ParityError(
                f"ONNX export of {run_id} fails its parity check on {test[0].case_id}: max |Δlogit| "
                f"{fp32['max_abs_logit_diff']:.3g} (limit {MAX_ABS_LOGIT_DIFF:g}), argmax agreement "
                f"{100 * fp32['argmax_agreement']:.3f} % (limit {100 * MIN_ARGMAX_AGREEMENT:g} %); nothing written"
            )
        summary = _stored_summary(results, run_id)
        record = {
            "run_id": run_id, "model": spec.model, "format": "onnx", "opset": options.opset,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "torch": torch.__version__,
            "onnx": onnx.__version__, "onnxruntime": ort.__version__, "threads": torch.get_num_threads(),
            "patch": list(spec.patch), "torch_latency_ms_median": torch_ms,
            "torch_dice": summary.dice_mean, "torch_hd95": summary.hd95_mean, "params": summary.params,
            "calibration_patches": options.calibration_patches if options.quantize else 0,
            "variants": variants,
        }  # fmt: skip
        for name, path in staged.items():
            sidecar = {**spec.to_json(), "export": {**record, "variant": name, **variants[name]}}
            sidecar["export"].pop("variants")
            final = out_dir / variants[name]["file"]
            atomic_write_json(final.with_name(final.name + ".json"), sidecar)
            path.replace(final)
    atomic_write_json(ResultsLayout(results).run(run_id).export_record, record)
    return record


def _stored_summary(results: Path, run_id: str) -> RunSummary:
    """The run's summary; one of unknown values where it has none yet (an export of a run that did not finish)."""
    path = ResultsLayout(results).run(run_id).summary
    return RunSummary.read(path) if path.is_file() else RunSummary.from_dict({}, str(path), run_id)
