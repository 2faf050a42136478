"""What each whole-CT option of `bench predict` costs and what it does to Dice, on a trained run's test CTs.

Segments the test images of --data (default: the built-in synthetic set) with --run (a run in --results; without
--run, the complete lcovnet smoke run there, trained first with `bench run --models lcovnet --preset smoke` when
there is none) once per option, each in a fresh `bench predict` process:

  run's settings       the run's window, overlap and Gaussian blending over the whole CT (what `bench run` scored)
  overlap 0.5/0.25/0   the run's window at that overlap
  window 2x            a window twice the run's on each side (the networks are fully convolutional), run's overlap
  blend constant       a plain mean of overlapping windows instead of Gaussian weights
  roi body / organs    coarse to fine (`bench predict --roi`): the body's box (HU threshold, no network), or the box
                       of the organs a 2x coarser pass of the network finds, plus --roi-margin mm

Per option: the mean seconds per case of each step (from --timings), the whole process's seconds (imports and
loading included), its own peak resident memory (ru_maxrss, bench.profiling.child), the share of the
preprocessed voxels the full-resolution windows covered (against the run's settings), and the mean Dice over cases
against the test labels (bench.evaluation.evaluate_folders on the run's organs), with its difference from the run's
settings. Prints the table and writes it as CSV (--csv, default RESULTS/predict_options.csv). --quick segments one
case. Times depend on the machine's load; run it on a quiet machine for figures to compare.

    python benchmarks/bench_predict_options.py [--results results] [--run RUN_ID] [--data PATH] [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from bench.deploy.predict import STEPS
from bench.profiling.child import run_child

SMOKE_RUN = ["--models", "lcovnet", "--preset", "smoke", "--device", "cpu"]


def find_or_train_run(results: Path, run_id: str | None) -> str:
    """--run, else the complete lcovnet smoke run without KD in ``results`` (trained here when there is none)."""
    from bench.store import ResultsStore

    if run_id:
        return run_id

    def smoke_runs() -> list[str]:
        return [s.run_id for s in ResultsStore(results).summaries()
                if s.model == "lcovnet" and s.kd == "none" and s.preset == "smoke"]  # fmt: skip

    if not results.exists() or not smoke_runs():
        print(f"no lcovnet smoke run in {results}: training one (bench run {' '.join(SMOKE_RUN)})", flush=True)
        subprocess.run([sys.executable, "-m", "bench", "-q", "run", *SMOKE_RUN, "--results", str(results)], check=True)
    return smoke_runs()[0]


def options(patch: list[int], overlap: float) -> list[tuple[str, list[str]]]:
    """(name, extra `bench predict` arguments) of each measured option; the first is the run's own settings."""
    double = ",".join(str(2 * p) for p in patch)
    return [
        ("run's settings", []),
        ("overlap 0.5", ["--overlap", "0.5"]),
        ("overlap 0.25", ["--overlap", "0.25"]),
        ("overlap 0", ["--overlap", "0"]),
        ("window 2x", ["--window", double]),
        ("blend constant", ["--blend", "constant"]),
        ("roi body", ["--roi", "body"]),
        ("roi organs", ["--roi", "organs"]),
    ]


def predict(command: list[str], log: Path) -> tuple[float, float]:
    """Run ``command`` to completion: (its wall seconds, its peak resident memory in MB)."""
    child = run_child(command, log)
    if child.returncode:
        raise SystemExit(f"{' '.join(command[2:])} failed (exit {child.returncode}):\n{log.read_text()[-3000:]}")
    return child.wall_s, child.peak_rss_mb


def dice_of(masks: Path, labels: Path, organs: dict[int, str]) -> float:
    from bench.evaluation import evaluate_folders
    from bench.metrics import summarize

    return summarize(evaluate_folders(masks, labels, organs))["dice_mean"]


def measure(args: argparse.Namespace, run_id: str, work: Path) -> pd.DataFrame:
    from bench.deploy.spec import run_spec

    spec, _ = run_spec(args.results, run_id)
    organs = {value: name for value, name in spec.labels.items() if value}
    images, labels = work / "images", work / "labels"
    images.mkdir()
    labels.mkdir()
    cases = sorted((args.data / "labelsTs").glob("*.nii.gz"))[: 1 if args.quick else None]
    for label in cases:
        case = label.name.removesuffix(".nii.gz")
        shutil.copy(args.data / "imagesTs" / f"{case}_0000.nii.gz", images)
        shutil.copy(label, labels)
    rows = []
    for name, extra in options(spec.patch, spec.overlap):
        out, timings = work / name.replace(" ", "_").replace("'", ""), work / f"{name}.csv"
        command = [sys.executable, "-m", "bench", "-q", "predict", "--device", "cpu", "--run", run_id, "--results",
                   str(args.results), "--input", str(images), "--output", str(out), "--timings", str(timings),
                   *extra]  # fmt: skip
        wall, peak = predict(command, work / f"{name}.log")
        steps = pd.read_csv(timings)
        window = extra[1] if "--window" in extra else ",".join(map(str, spec.patch))
        rows.append({
            "option": name,
            "window": window.replace(",", "x"),
            "overlap": float(extra[1]) if "--overlap" in extra else spec.overlap,
            "blend": extra[1] if "--blend" in extra else "gaussian",
            "roi": extra[1] if "--roi" in extra else "full",
            **{f"{s} (s)": steps[s].mean() for s in STEPS},
            "total (s)": steps["total"].mean(),
            "process (s)": wall,
            "peak RSS (MB)": peak,
            "voxels": steps["segmented_voxels"].sum(),
            "dice": dice_of(out, labels, organs),
        })  # fmt: skip
        print(f"  {name}: {steps['total'].mean():.2f} s per case, {peak:.0f} MB, Dice {rows[-1]['dice']:.4f}",
              flush=True)  # fmt: skip
    frame = pd.DataFrame(rows)
    frame["windowed voxels (%)"] = 100 * frame["voxels"] / frame["voxels"].iloc[0]
    frame["dice - run's"] = frame["dice"] - frame["dice"].iloc[0]
    return frame.drop(columns="voxels")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=Path("results"), help="results store (default results/)")
    parser.add_argument("--run", metavar="RUN_ID", help="the run to segment with (default: its lcovnet smoke run)")
    parser.add_argument("--data", type=Path,
                        help="data set with imagesTs/labelsTs (default: the built-in synthetic set)")  # fmt: skip
    parser.add_argument("--csv", type=Path, help="where to write the table (default RESULTS/predict_options.csv)")
    parser.add_argument("--quick", action="store_true", help="segment one test case per option")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from bench.data.synth import ensure_default_dataset

    args = parse_args(argv)
    args.data = args.data or ensure_default_dataset()
    run_id = find_or_train_run(args.results, args.run)
    print(f"run {run_id}, test CTs of {args.data}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}",
          flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        frame = measure(args, run_id, Path(tmp))
    print(table(frame))
    target = args.csv or args.results / "predict_options.csv"
    target.write_text(frame.to_csv(index=False))
    print(f"load average after: {os.getloadavg()[0]:.2f}; table written to {target}")


def table(frame: pd.DataFrame) -> str:
    """The measurements as text: seconds to 0.01 s, memory to 1 MB, Dice to 1e-4."""
    digits = {"overlap": "g", "peak RSS (MB)": ".0f", "windowed voxels (%)": ".1f", "dice": ".4f",
              "dice - run's": "+.4f"}  # fmt: skip
    rows = [[format(v, digits.get(c, ".2f")) if isinstance(v, float) else v for c, v in row.items()]
            for row in frame.to_dict("records")]  # fmt: skip
    return tabulate(rows, headers=list(frame.columns), disable_numparse=True)


if __name__ == "__main__":
    main()
