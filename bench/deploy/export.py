"""``bench export``: a stored run to ONNX or OpenVINO IR (and int8), with its parity check, latency and accuracy on
the test split.

Each variant is written as ``model[.int8].onnx`` (or ``model[.int8].xml`` with its ``.bin``) plus a JSON sidecar
``model[.int8].onnx.json`` (the run's deployment spec, with what the export measured), and the run directory gets
``export.json`` (``export.openvino.json``), the record that ``bench report`` shows in its deployment table. The
OpenVINO export also measures the fp32 IR compiled in bf16 where the CPU has native bf16 (no file of its own).
Files are written under temporary names and renamed once every check passed; a failed parity check leaves no file
behind.
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
from bench.profiling.flops import count_macs
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
    format: str = "onnx"  # "onnx" or "openvino"
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


@dataclasses.dataclass
class StagedVariant:
    """One model variant staged for the export: its files (first the one the sidecar describes), the network that
    runs it behind the ``nn.Module`` interface, and what to record about how it ran."""

    files: list[Path]
    network: torch.nn.Module
    record: dict


def _stage_onnx(network, spec: DeploySpec, tmp: Path, options: ExportOptions, train, steps) -> dict[str, StagedVariant]:
    """The fp32 ONNX file and, with ``--quantize int8``, onnxruntime's static int8 model, run by onnxruntime."""
    from bench.deploy.onnx_export import export_onnx
    from bench.deploy.predict import OnnxNetwork, ort_session
    from bench.deploy.quantize import calibration_patches, quantize_int8

    staged = {"fp32": tmp / "model.onnx"}
    export_onnx(network, spec.in_channels, spec.patch, staged["fp32"], options.opset)
    steps.update()
    if options.quantize:
        staged["int8"] = tmp / "model.int8.onnx"
        patches = calibration_patches(train, spec.patch, options.calibration_patches)
        quantize_int8(staged["fp32"], staged["int8"], patches)
        steps.update()
    return {
        name: StagedVariant([path], OnnxNetwork(ort_session(path)), {"runtime": "onnxruntime", "precision": name})
        for name, path in staged.items()
    }


def _stage_openvino(
    network, spec: DeploySpec, tmp: Path, options: ExportOptions, train, steps
) -> dict[str, StagedVariant]:
    """The fp32 IR (through the same ONNX graph) run in fp32 and in bf16, and NNCF's int8 IR, run by OpenVINO."""
    from bench.deploy.onnx_export import export_onnx
    from bench.deploy.openvino_runtime import (
        OpenVinoNetwork,
        compile_model,
        ir_files,
        onnx_to_ir,
        quantize_int8_ir,
        resolve_precision,
    )
    from bench.deploy.quantize import calibration_patches

    onnx = tmp / "intermediate" / "model.onnx"
    onnx.parent.mkdir()
    export_onnx(network, spec.in_channels, spec.patch, onnx, options.opset)
    xml = tmp / "model.xml"
    onnx_to_ir(onnx, xml)
    steps.update()
    runs = {"fp32": (xml, resolve_precision("fp32")), "bf16": (xml, resolve_precision("bf16"))}
    if options.quantize:
        int8 = tmp / "model.int8.xml"
        patches = calibration_patches(train, spec.patch, options.calibration_patches)
        quantize_int8_ir(xml, int8, patches, options.calibration_patches)
        runs["int8"] = (int8, resolve_precision("fp32"))  # the layers NNCF leaves in float run in fp32
        steps.update()
    variants = {}
    for name, (path, precision) in runs.items():
        record = {"runtime": "openvino", "precision": name if name == "int8" else precision.used}
        if precision.note:
            record["note"] = precision.note
        files = list(ir_files(path)) if name != "bf16" else []  # bf16 is fp32's IR compiled in bf16
        variants[name] = StagedVariant(files, OpenVinoNetwork(compile_model(path, precision), precision), record)
    return variants


_STAGERS = {"onnx": _stage_onnx, "openvino": _stage_openvino}


def export_run(results: Path, run_id: str, options: ExportOptions, progress: bool = True) -> dict:
    """Export the run, check and measure every variant; returns the record also written to the run's export record
    (``export.json`` for ONNX, ``export.openvino.json`` for OpenVINO)."""
    from bench.atomic import atomic_write_json, writable_folder
    from bench.console import Progress
    from bench.deploy.predict import Segmenter, load_torch_model
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
    steps = Progress(1 + bool(options.quantize) + 1, "export", "steps", enabled=progress)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=out_dir) as tmp, steps:
        staged = _STAGERS[options.format](network, spec, Path(tmp), options, train, steps)
        image = np.array(load_prepared(test[0])[0])
        with torch.inference_mode():
            torch_logits = reference.logits(image)
        patch = torch.zeros(1, spec.in_channels, *spec.patch)
        with torch.inference_mode():
            torch_ms = _timed_ms(lambda: network(patch), options.warmup, options.runs)
        variants = {}
        for name, variant in staged.items():
            segmenter = Segmenter(variant.network, fp32_spec)
            logits = segmenter.logits(image)
            files = variant.files or staged["fp32"].files
            variants[name] = {
                "file": files[0].name,
                "size_mb": sum(f.stat().st_size for f in files) / 2**20,
                **variant.record,
                "latency_ms_median": _timed_ms(lambda n=variant.network: n(patch), options.warmup, options.runs),
                "max_abs_logit_diff": float((logits - torch_logits).abs().max()),
                "argmax_agreement": float((logits.argmax(0) == torch_logits.argmax(0)).double().mean()),
                "parity_case": test[0].case_id,
                **_accuracy(segmenter, test, spec.labels),
            }
        steps.update()
        steps.close()
        gmacs = count_macs(network, patch).macs / 1e9
        peaks = _against_peaks(gmacs, variants, options.format)
        fp32 = variants["fp32"]
        if fp32["max_abs_logit_diff"] >= MAX_ABS_LOGIT_DIFF or fp32["argmax_agreement"] < MIN_ARGMAX_AGREEMENT:
            raise ParityError(
                f"{FORMAT_NAMES[options.format]} export of {run_id} fails its parity check on {test[0].case_id}: "
                f"max |Δlogit| {fp32['max_abs_logit_diff']:.3g} (limit {MAX_ABS_LOGIT_DIFF:g}), argmax agreement "
                f"{100 * fp32['argmax_agreement']:.3f} % (limit {100 * MIN_ARGMAX_AGREEMENT:g} %); nothing written"
            )
        summary = _stored_summary(results, run_id)
        record = {
            "run_id": run_id, "model": spec.model, "format": options.format, "opset": options.opset,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "torch": torch.__version__,
            **_runtime_versions(options.format), "threads": torch.get_num_threads(),
            "patch": list(spec.patch), "torch_latency_ms_median": torch_ms,
            "torch_dice": summary.dice_mean, "torch_hd95": summary.hd95_mean, "params": summary.params,
            "gmacs": gmacs, "peak_gmacs_per_s": peaks, "torch_gmacs_per_s": gmacs / (torch_ms / 1000),
            "calibration_patches": options.calibration_patches if options.quantize else 0,
            "variants": variants,
        }  # fmt: skip
        for name, variant in staged.items():
            if not variant.files:
                continue
            sidecar = {**spec.to_json(), "export": {**record, "variant": name, **variants[name]}}
            sidecar["export"].pop("variants")
            main = out_dir / variant.files[0].name
            atomic_write_json(main.with_name(main.name + ".json"), sidecar)
            for path in reversed(variant.files):  # an IR's .bin before its .xml: the .xml never lacks its weights
                path.replace(out_dir / path.name)
    atomic_write_json(ResultsLayout(results).run(run_id).export_record_of(options.format), record)
    return record


def _against_peaks(gmacs: float, variants: dict[str, dict], fmt: str) -> dict[str, float]:
    """Each variant's achieved GMAC/s on one patch and its share of a GEMM timed here in its precision (int8 against
    an int8 GEMM; for an OpenVINO export the faster of torch's and OpenVINO's, ``machine_peak``); adds both to the
    variants and returns the peaks by precision (fp32 always, for PyTorch's own latency)."""
    from bench.deploy.openvino_runtime import machine_peak
    from bench.profiling.peak import measure_peak

    peak_of = machine_peak if fmt == "openvino" else measure_peak
    peaks = {"fp32": peak_of("fp32")}
    for v in variants.values():
        if v["precision"] not in peaks:
            peaks[v["precision"]] = peak_of(v["precision"])
    for v in variants.values():
        v["gmacs_per_s"], v["peak_share"] = peaks[v["precision"]].share(gmacs, v["latency_ms_median"] / 1000)
    return {name: peak.gmacs_per_s for name, peak in peaks.items()}


FORMAT_NAMES = {"onnx": "ONNX", "openvino": "OpenVINO"}


def _runtime_versions(fmt: str) -> dict[str, str]:
    """The versions of the packages that wrote and ran the exported files."""
    import onnx

    if fmt == "openvino":
        import openvino

        return {"onnx": onnx.__version__, "openvino": openvino.__version__}
    import onnxruntime as ort

    return {"onnx": onnx.__version__, "onnxruntime": ort.__version__}


def _stored_summary(results: Path, run_id: str) -> RunSummary:
    """The run's summary; one of unknown values where it has none yet (an export of a run that did not finish)."""
    path = ResultsLayout(results).run(run_id).summary
    return RunSummary.read(path) if path.is_file() else RunSummary.from_dict({}, str(path), run_id)
