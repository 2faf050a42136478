"""``bench export``: a stored run as an ONNX file or OpenVINO IR (and optionally int8), checked against PyTorch and
measured.

The ONNX file has dynamic batch and spatial axes and passes onnx's checker; its JSON sidecar (FILE.json) holds the
run's deployment spec (labels, spacing, normalisation with the training set's statistics, window size, overlap,
model, run id), so `bench predict --onnx FILE` segments CTs exactly like `bench predict --run`. The parity check
runs PyTorch and onnxruntime over the same whole preprocessed test case (sliding window) and requires max |Δlogit|
< 1e-3 and argmax agreement >= 99.9 %; otherwise the export fails with exit code 1 and writes nothing.
--quantize int8 adds a static int8 model (onnxruntime QDQ, calibrated on training patches). For every variant the
export reports file size, onnxruntime latency on one patch (PyTorch's next to it) with the achieved GMAC/s and its
share of this machine's peak (a dense GEMM timed in the same process and precision), and Dice/HD95 on the run's test
split, so the accuracy cost of compression is measured; the run directory gets export.json for `bench report`.

--format openvino writes OpenVINO IR (model.xml and model.bin, converted from the same ONNX graph, weights in fp32)
with the same sidecar (model.xml.json) and the same parity check, run by OpenVINO's CPU plugin in fp32; the IR is
also measured compiled in bf16 where the CPU has native bf16 (the table says which precision ran, and why not bf16
where it could not), and --quantize int8 adds NNCF's post-training int8 IR (model.int8.xml) calibrated on training
patches. Its record is export.openvino.json (needs `pip install segkd-bench[openvino]`).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a stored run to ONNX (optionally int8) with parity, latency and accuracy checks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Example: bench export --run synthetic__lcovnet__kd-none__s0__3f2a9c1b --format onnx --quantize int8",
    )
    p.add_argument("--run", required=True, metavar="RUN_ID", help="a run in the results store")
    p.add_argument("--results", type=Path, default=Path("results"), help="results store (default results/)")
    p.add_argument("--format", default="onnx", choices=["onnx", "openvino"], help="export format (default onnx)")
    p.add_argument("--quantize", choices=["int8"], help="also write a post-training int8 model")
    p.add_argument("--out", type=Path, metavar="DIR", help="output folder (default: RESULTS/runs/RUN_ID/export)")
    p.add_argument("--calibration-patches", type=int, default=16, metavar="N",
                   help="training patches for int8 calibration (default 16)")  # fmt: skip
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--warmup", type=int, default=2, help="untimed passes before timing a patch (default 2)")
    p.add_argument("--runs", type=int, default=5, help="timed passes of one patch (default 5)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    from bench.deploy import require_onnx
    from bench.errors import BenchError

    require_onnx("bench export")
    if args.format == "openvino":
        from bench.deploy.openvino_runtime import require_openvino

        require_openvino("bench export --format openvino", int8=bool(args.quantize))
    from bench.deploy.export import ExportOptions, export_run
    from bench.store_layout import ResultsLayout

    for flag, value, low in (("--calibration-patches", args.calibration_patches, 1), ("--runs", args.runs, 1),
                             ("--warmup", args.warmup, 0), ("--opset", args.opset, 13)):  # fmt: skip
        if value < low:
            raise BenchError(f"{flag} must be at least {low}, got {value}")
    out = args.out or ResultsLayout(args.results).run(args.run).export_dir
    options = ExportOptions(
        out, args.format, args.quantize, args.calibration_patches, args.warmup, args.runs, args.opset
    )
    record = export_run(args.results, args.run, options)
    print(format_record(record, out))
    return 0


def format_record(record: dict, out: Path) -> str:
    from tabulate import tabulate

    torch_rate = record["torch_gmacs_per_s"]
    rows = [["pytorch fp32", "-", "-", f"{record['torch_latency_ms_median']:.1f}", f"{torch_rate:.1f}",
             f"{100 * torch_rate / record['peak_gmacs_per_s']['fp32']:.1f}", "-", "-",
             _num(record["torch_dice"], 4), _num(record["torch_hd95"], 2)]]  # fmt: skip
    for name, v in record["variants"].items():
        runtime = f"{v.get('runtime', 'onnxruntime')} {v.get('precision', name)}"
        rows.append([runtime, v["file"], f"{v['size_mb']:.2f}", f"{v['latency_ms_median']:.1f}",
                     f"{v['gmacs_per_s']:.1f}", f"{100 * v['peak_share']:.1f}", f"{v['max_abs_logit_diff']:.2e}",
                     f"{100 * v['argmax_agreement']:.3f}", _num(v["dice"], 4), _num(v["hd95"], 2)])  # fmt: skip
    headers = ["runtime", "file", "size (MB)", "patch ms", "GMAC/s", "% of peak", "max |Δlogit|", "argmax agree %",
               "Dice", "HD95 mm"]  # fmt: skip
    patch = "x".join(map(str, record["patch"]))
    title = (
        f"{record['run_id']}: {record['model']}, patch {patch}, {record['threads']} thread(s), parity and "
        f"accuracy on {record['variants']['fp32']['cases']} test case(s); files in {out}"
    )
    peaks = ", ".join(f"{p} {rate:.1f}" for p, rate in record["peak_gmacs_per_s"].items())
    lines = [title, tabulate(rows, headers=headers, disable_numparse=True),
             f"peak GMAC/s (a square GEMM timed in this process, same threads): {peaks}"]  # fmt: skip
    for name in ("bf16", "int8"):
        if name in record["variants"] and record["variants"][name].get("precision") == name:
            drop = record["variants"]["fp32"]["dice"] - record["variants"][name]["dice"]
            lines.append(f"{name} Dice drop (fp32 {record['format']} minus {name}, on the test split): {drop:+.4f}")
    lines += [f"{name}: {v['note']}" for name, v in record["variants"].items() if v.get("note")]
    return "\n".join(lines)


def _num(value, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
