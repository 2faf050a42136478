"""Training throughput (iterations per second) of lcovnet and unet3d under a preset, measured in one run.

Each model trains ``--iterations`` steps (after ``--warmup``) on patches drawn by the real sampler from a small
synthetic set, with the protocol's loss, optimiser and widths; the table gives it/s and the lcovnet/unet3d ratio.

    python benchmarks/bench_train.py [--preset smoke] [--iterations 20] [--models lcovnet,unet3d]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from tabulate import tabulate

from bench.data.layouts import load_dataset
from bench.data.preprocess import PreprocessSettings, prepare_cases
from bench.data.sampler import make_patch_loader
from bench.data.synth import generate_dataset
from bench.list_args import parse_name_list
from bench.networks import build_model, model_kwargs
from bench.training.config import load_config
from bench.training.trainer import Trainer


def iterations_per_second(name: str, cases: list, classes: int, config, warmup: int, iterations: int) -> float:
    model = build_model(name, 1, classes, **model_kwargs(name, config))
    trainer = Trainer(model=model, config=config, train_cases=cases, val_cases=[], device=torch.device("cpu"),
                      run_dir=Path(tempfile.mkdtemp()), seed=0)  # fmt: skip
    loader = make_patch_loader(cases, tuple(config.patch), config.batch_size, seed=0, fg_fraction=config.fg_fraction)
    for i in range(warmup):
        trainer.train_step(next(loader), i)
    start = time.perf_counter()
    for i in range(iterations):
        trainer.train_step(next(loader), i)
    return iterations / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="smoke")
    parser.add_argument("--models", default="lcovnet,unet3d")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    config = load_config(args.preset)
    with tempfile.TemporaryDirectory() as tmp:
        root = generate_dataset(Path(tmp) / "data", cases=4, test_cases=0, seed=0, progress=False)
        dataset = load_dataset(root)
        organs = config.organs_for(dataset.name)
        labels = dataset.labels_for(organs)
        spacing = None if config.spacing in ("keep", "median") else tuple(config.spacing)
        keep = dataset.keep_labels_for(organs)
        settings = PreprocessSettings(target_spacing=spacing, normalization="ct", keep_labels=keep)
        cases = prepare_cases(dataset.cases, settings, Path(tmp) / "cache", workers=1, progress=False)
        rates = {
            n: iterations_per_second(n, cases, max(labels) + 1, config, args.warmup, args.iterations)
            for n in parse_name_list(args.models, "--models")
        }
    first = next(iter(rates.values()))
    rows = [[n, f"{r:.2f}", f"{1 / r:.3f}", f"{r / first:.2f}"] for n, r in rates.items()]
    print(
        f"preset {args.preset}: patch {config.patch}, batch {config.batch_size}, base_channels "
        f"{config.base_channels}, threads {torch.get_num_threads()}, torch {torch.__version__}"
    )
    print(tabulate(rows, headers=["model", "it/s", "s/it", f"ratio to {next(iter(rates))}"]))


if __name__ == "__main__":
    main()
