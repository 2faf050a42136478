"""``bench predict``: segment new CTs with a trained run, its weights, or an exported ONNX or OpenVINO file.

The network comes from --run RUN_ID (a run in the results store), from --weights FILE [--model NAME] with
--preprocessing JSON (a run's preprocessing.json or an export's sidecar), or from --onnx FILE (run by onnxruntime; its
sidecar FILE.json is read unless --preprocessing names another), or from --openvino FILE.xml (an IR from `bench export
--format openvino`, sidecar FILE.xml.json). --runtime openvino runs any of them with OpenVINO's CPU plugin (a run's or
weights file's network is converted through ONNX first, an --onnx file compiled as it is) in --precision fp32 or bf16;
bf16 on a CPU without native bf16 runs in fp32 and says so. Each input is preprocessed with the run's own settings
(orientation, spacing, normalisation with the training set's statistics, crop), segmented by Gaussian-blended sliding
windows at the run's window size and overlap (--window, --overlap and --blend change them: a larger window than the
training patch, less overlap or constant weights cost less time), and written to --output as a mask in the input's
original size, spacing, origin and direction, named after the input (nnU-Net channel files CASE_0000.nii.gz give
CASE.nii.gz). --input is an image file, a folder of image files, a DICOM series folder (SimpleITK's series reader; the
largest CT series when the folder holds several; the mask is NIfTI in the series' geometry), or a data set in any
layout `bench data` reads (every case of it is segmented). All inputs are checked before the first mask is written;
each mask is written under a temporary name and renamed, so a failure never leaves a partial file. The seconds spent
reading, locating, preprocessing, inferring, restoring and writing each case are printed (and written with --timings,
with the number of voxels the full-resolution windows covered).

Coarse to fine (--roi): `full` (default) runs the sliding window over the whole preprocessed CT, as `bench run`
evaluates. `body` first crops the CT to the body's bounding box, found without the network (above -500 HU at about
4 mm per voxel, the largest connected component, plus 5 mm), so preprocessing and windows shrink too. `organs` does
that, then runs the network once on a 2x coarser copy of the preprocessed CT and segments at full resolution only
the bounding box of the organs it found, plus --roi-margin mm (default 10) and grown to one window at least;
everything outside is background (nothing found: the whole CT is segmented). Masks are in the input's full geometry
whatever --roi is.
"""

from __future__ import annotations

import argparse
from pathlib import Path

RUNTIMES = ("pytorch", "onnxruntime", "openvino")


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
    source.add_argument("--openvino", type=Path, metavar="FILE.xml",
                        help="an OpenVINO IR from `bench export --format openvino`")  # fmt: skip
    p.add_argument("--runtime", choices=RUNTIMES,
                   help="pytorch, onnxruntime or openvino (default: pytorch for --run and --weights, onnxruntime "
                   "for --onnx, openvino for --openvino)")  # fmt: skip
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="with --runtime openvino: fp32, or bf16 where the CPU has it (default fp32)")  # fmt: skip
    p.add_argument("--model", help="with --weights: the registered model (default: the one in --preprocessing)")
    p.add_argument("--preprocessing", type=Path, metavar="JSON",
                   help="a run's preprocessing.json or an export sidecar (default with --onnx: FILE.json)")  # fmt: skip
    p.add_argument("--window", metavar="D,H,W",
                   help="sliding window instead of the run's (the networks are fully convolutional: a larger window "
                   "means fewer windows and less overlap work; it must suit the network's pooling)")  # fmt: skip
    p.add_argument("--overlap", type=float, help="window overlap in [0, 1) instead of the run's")
    p.add_argument("--blend", choices=["gaussian", "constant"], default="gaussian",
                   help="weighting of overlapping windows: gaussian (the run's) or constant (cheaper)")  # fmt: skip
    p.add_argument("--roi", choices=["full", "body", "organs"], default="full",
                   help="where the full-resolution windows run: the whole CT (default), the body's box (HU threshold, "
                   "no network), or the organs' box from a coarse pass of the network (see above)")  # fmt: skip
    p.add_argument("--roi-margin", type=float, metavar="MM",
                   help="with --roi organs: mm added around the organs the coarse pass found (default 10)")  # fmt: skip
    p.add_argument("--input", required=True, type=Path,
                   help="an image file, a folder of images, a DICOM series folder, or a data set")  # fmt: skip
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

    margin = roi_margin(args)  # the arguments alone first: a wrong combination is refused before any loading
    device = resolve_device(args.device)
    network, spec = load_network(args, device)
    spec = inference_options(spec, args)
    cases = find_inputs(args.input, spec.in_channels)
    writable_folder(args.output, "--output")
    segmenter = Segmenter(network, spec, device, args.blend, args.roi, margin)
    rows = predict_cases(segmenter, cases, args.output)
    frame = pd.DataFrame(rows)
    table = frame[["case", *STEPS, "total"]]
    print(tabulate(table.values.tolist(), headers=["case", *(f"{s} (s)" for s in STEPS), "total (s)"], floatfmt=".2f"))
    print(f"{len(rows)} mask(s) in {args.output}; mean {frame['total'].mean():.2f} s per case; roi {args.roi}; "
          f"{describe_runtime(network)}")  # fmt: skip
    if args.timings:
        atomic_write_text(args.timings, frame.to_csv(index=False))
    return 0


def roi_margin(args: argparse.Namespace) -> float:
    """--roi-margin, or the default margin of --roi organs."""
    from bench.deploy.roi import ORGANS_MARGIN_MM
    from bench.errors import BenchError

    if args.roi_margin is None:
        return ORGANS_MARGIN_MM
    if args.roi != "organs":
        raise BenchError("--roi-margin is only used with --roi organs")
    return args.roi_margin


def inference_options(spec, args: argparse.Namespace):
    """The spec with --window and --overlap in place of the run's, checked against the network."""
    import dataclasses

    from bench.deploy.predict import check_window
    from bench.errors import BenchError
    from bench.list_args import parse_int_list

    if args.window is None and args.overlap is None:
        return spec
    window = parse_int_list(args.window, "--window", length=3) if args.window else spec.patch
    overlap = spec.overlap if args.overlap is None else args.overlap
    changed = dataclasses.replace(spec, patch=list(window), overlap=overlap)
    problem = changed.problem()
    if problem:
        raise BenchError(f"--window/--overlap: {problem}")
    check_window(changed)
    return changed


def describe_runtime(network) -> str:
    """Which runtime segmented, and in which precision (with why, where it is not the one asked for)."""
    from bench.deploy.openvino_runtime import OpenVinoNetwork
    from bench.deploy.predict import OnnxNetwork

    if isinstance(network, OpenVinoNetwork):
        p = network.precision
        return f"runtime openvino, precision {p.used}" + (f" ({p.note})" if p.note else "")
    return "runtime onnxruntime" if isinstance(network, OnnxNetwork) else "runtime pytorch"


def load_network(args: argparse.Namespace, device):
    """(network, deployment spec) from --run, --weights, --onnx or --openvino, run by --runtime."""
    from bench.errors import BenchError

    runtime = args.runtime or ("onnxruntime" if args.onnx else "openvino" if args.openvino else "pytorch")
    if args.precision != "fp32" and runtime != "openvino":
        raise BenchError(f"--precision {args.precision} needs --runtime openvino (the {runtime} runtime runs fp32)")
    if runtime == "pytorch" and (args.onnx or args.openvino):
        raise BenchError(f"--runtime pytorch cannot run {'--onnx' if args.onnx else '--openvino'} files")
    if runtime == "onnxruntime" and not args.onnx:
        raise BenchError("--runtime onnxruntime runs --onnx files only (export the run with `bench export` first)")
    if runtime == "openvino":
        from bench.deploy.openvino_runtime import require_openvino

        require_openvino("bench predict --runtime openvino")
        if args.device != "auto" and device.type != "cpu":
            raise BenchError(f"--runtime openvino runs on the CPU only, not --device {args.device}")
    return _load_network(args, device, runtime)


def _load_network(args: argparse.Namespace, device, runtime: str):
    from bench.deploy.predict import OnnxNetwork, check_window, ort_session
    from bench.deploy.spec import read_spec
    from bench.errors import BenchError

    if args.model and not args.weights:
        raise BenchError("--model is only used with --weights")
    if args.run or args.weights:
        network, spec = _torch_network(args)
        if runtime == "openvino":
            from bench.deploy import require_onnx
            from bench.deploy.openvino_runtime import torch_to_openvino

            require_onnx("bench predict --runtime openvino with --run or --weights")
            network = torch_to_openvino(network, spec.in_channels, spec.patch, args.precision)
        return network, spec
    flag, path = ("--onnx", args.onnx) if args.onnx else ("--openvino", args.openvino)
    if not path.is_file():
        raise BenchError(f"{flag} {path}: no such file")
    sidecar = args.preprocessing or path.with_name(path.name + ".json")
    spec = read_spec(sidecar, "--preprocessing" if args.preprocessing else f"{flag} sidecar")
    check_window(spec)
    if runtime == "openvino":
        from bench.deploy.openvino_runtime import OpenVinoNetwork, compile_model, resolve_precision

        precision = resolve_precision(args.precision)
        return OpenVinoNetwork(compile_model(path, precision), precision), spec
    from bench.deploy import require_onnx

    require_onnx("bench predict --onnx")
    return OnnxNetwork(ort_session(path, device)), spec


def _torch_network(args: argparse.Namespace):
    """(PyTorch network, deployment spec) from --run or --weights with --preprocessing."""
    from bench.deploy.predict import load_torch_model
    from bench.deploy.spec import read_spec, run_spec
    from bench.errors import BenchError
    from bench.networks import note_format

    if args.run:
        if args.preprocessing:
            raise BenchError("--preprocessing is not used with --run (the run has its own)")
        spec, weights = run_spec(args.results, args.run)
        return load_torch_model(spec, weights)[0], spec
    if not args.preprocessing:
        raise BenchError("--weights needs --preprocessing JSON (a run's preprocessing.json or an export sidecar)")
    if not args.weights.is_file():
        raise BenchError(f"--weights {args.weights}: no such file")
    spec = read_spec(args.preprocessing)
    network, found = load_torch_model(spec, args.weights, args.model, what="--weights")
    note_format("--weights", args.weights, found)
    return network, spec
