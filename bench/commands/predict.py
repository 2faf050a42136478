"""``bench predict``: segment new CTs with a trained run, its weights, or an exported ONNX file.

The network comes from --run RUN_ID (a run in the results store), from --weights FILE [--model NAME] with
--preprocessing JSON (a run's preprocessing.json or an export's sidecar), or from --onnx FILE (run by
onnxruntime; its sidecar FILE.json is read unless --preprocessing names another). Each input is preprocessed with
the run's own settings (orientation, spacing, normalisation with the training set's statistics, crop), segmented by
Gaussian-blended sliding windows at the run's window size and overlap, and written to --output as a mask in the
input's original size, spacing, origin and direction, named after the input (nnU-Net channel files CASE_0000.nii.gz
give CASE.nii.gz). --input is an image file, a folder of image files, a DICOM series folder (SimpleITK's series
reader; the largest CT series when the folder holds several; the mask is NIfTI in the series' geometry), or a data
set in any layout `bench data` reads (every case of it is segmented). All inputs are checked before the first mask
is written; each mask is written under a temporary name and renamed, so a failure never leaves a partial file. The
seconds spent reading, preprocessing, inferring, restoring and writing each case are printed (and written with
--timings).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="segment new CTs with a trained run, weights file or ONNX export",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Example: bench predict --run synthetic__lcovnet__kd-none__s0__3f2a9c1b --input imagesTs/ --output "
        "masks/",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", metavar="RUN_ID", help="a run in the results store (its weights and preprocessing)")
    source.add_argument("--weights", type=Path, metavar="FILE", help="a weights file (needs --preprocessing)")
    source.add_argument("--onnx", type=Path, metavar="FILE", help="an ONNX file from `bench export`")
    p.add_argument("--model", help="with --weights: the registered model (default: the one in --preprocessing)")
    p.add_argument("--preprocessing", type=Path, metavar="JSON",
                   help="a run's preprocessing.json or an export sidecar (default with --onnx: FILE.json)")  # fmt: skip
    p.add_argument(
        "--input",
        required=True,
        type=Path,
        help="an image file, a folder of images, a DICOM series folder, or a data set",
    )
    p.add_argument("--output", required=True, type=Path, metavar="DIR", help="folder for the masks")
    p.add_argument("--results", type=Path, default=Path("results"), help="results store for --run (default results/)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default auto)")
    p.add_argument("--timings", type=Path, metavar="CSV", help="write the per-case step timings as CSV")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import pandas as pd
    from tabulate import tabulate

    from bench.atomic import atomic_write_text, writable_folder
    from bench.deploy.inputs import find_inputs
    from bench.deploy.predict import STEPS, Segmenter, predict_cases
    from bench.device import resolve_device

    device = resolve_device(args.device)
    network, spec = load_network(args, device)
    cases = find_inputs(args.input, spec.in_channels)
    writable_folder(args.output, "--output")
    rows = predict_cases(Segmenter(network, spec, device), cases, args.output)
    frame = pd.DataFrame(rows)
    table = frame[["case", *STEPS, "total"]]
    print(tabulate(table.values.tolist(), headers=["case", *(f"{s} (s)" for s in STEPS), "total (s)"], floatfmt=".2f"))
    print(f"{len(rows)} mask(s) in {args.output}; mean {frame['total'].mean():.2f} s per case")
    if args.timings:
        atomic_write_text(args.timings, frame.to_csv(index=False))
    return 0


def load_network(args: argparse.Namespace, device):
    """(network, deployment spec) from --run, --weights or --onnx."""
    from bench.deploy.predict import OnnxNetwork, check_window, load_torch_model, ort_session
    from bench.deploy.spec import read_spec, run_spec
    from bench.errors import BenchError
    from bench.networks import note_format

    if args.model and not args.weights:
        raise BenchError("--model is only used with --weights")
    if args.run:
        if args.preprocessing:
            raise BenchError("--preprocessing is not used with --run (the run has its own)")
        spec, weights = run_spec(args.results, args.run)
        return load_torch_model(spec, weights)[0], spec
    if args.weights:
        if not args.preprocessing:
            raise BenchError("--weights needs --preprocessing JSON (a run's preprocessing.json or an export sidecar)")
        if not args.weights.is_file():
            raise BenchError(f"--weights {args.weights}: no such file")
        spec = read_spec(args.preprocessing)
        network, found = load_torch_model(spec, args.weights, args.model, what="--weights")
        note_format("--weights", args.weights, found)
        return network, spec
    if not args.onnx.is_file():
        raise BenchError(f"--onnx {args.onnx}: no such file")
    from bench.deploy import require_onnx

    require_onnx("bench predict --onnx")
    sidecar = args.preprocessing or args.onnx.with_name(args.onnx.name + ".json")
    spec = read_spec(sidecar, "--preprocessing" if args.preprocessing else "--onnx sidecar")
    check_window(spec)
    return OnnxNetwork(ort_session(args.onnx, device)), spec
