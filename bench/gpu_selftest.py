"""Self-test of every GPU path in one call, on a GPU (``bench/gpu_selftest.sh``) or, with ``--device cpu``, the tests.

1. Latency and peak memory of lcovnet and unet3d in fp32 and under AMP (+ ``channels_last_3d`` on CUDA), with the
   AMP/fp32 ratio measured in the same run (CUDA events on a GPU).
2. A short training + evaluation grid (lcovnet without KD and with CA-KD from a unet3d teacher) on a small
   synthetic set with AMP and ``channels_last_3d``, fp16 with a grad scaler on CUDA, and ``torch.compile`` when
   ``--compile`` is given: the loss stays finite, the sliding-window inference and evaluation run, and the figures
   are printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from tabulate import tabulate

from bench.device import resolve_device
from bench.environment import environment
from bench.executors.inline import run_inline
from bench.grid.spec import GridSpec
from bench.pipeline.checks import check_grid
from bench.pipeline.context import GridContext
from bench.profiling.profile import ProfileSettings, profile_model
from bench.training.config import load_config


def _latency_table(device: torch.device, quick: bool) -> list[list]:
    patch = (32, 64, 64) if quick else (64, 128, 128)
    kwargs = {"base_channels": 8} if quick else {}
    amp = "bf16"
    rows = []
    for name in ("lcovnet", "unet3d"):
        base = ProfileSettings(classes=17, patch=patch, device=device, warmup=2 if quick else 10,
                               runs=3 if quick else 40, thop=False, model_kwargs=kwargs)  # fmt: skip
        fp32 = profile_model(name, base)
        mixed = profile_model(
            name, ProfileSettings(**{**vars(base), "amp": amp, "channels_last": device.type == "cuda"})
        )
        fp32_ms, amp_ms = fp32["latency_ms_median"], mixed["latency_ms_median"]
        rows.append([name, "x".join(map(str, patch)), f"{fp32_ms:.2f}", f"{amp_ms:.2f}", f"{amp_ms / fp32_ms:.2f}",
                     f"{fp32['peak_mem_mb']:.0f}", f"{mixed['peak_mem_mb']:.0f}", fp32["device"]])  # fmt: skip
    return rows


def _grid(device: torch.device, quick: bool, compile_: bool, work: Path) -> list[dict]:
    from bench.data.synth import generate_dataset

    size = (32, 48, 48) if quick else (48, 128, 128)
    data = generate_dataset(work / "data", cases=4 if quick else 8, seed=0, size=size, test_cases=2)
    summaries = []
    precisions = ["bf16", "fp16"] if device.type == "cuda" else ["bf16"]
    for amp in precisions:
        overrides = [f'amp="{amp}"', f"channels_last={'true' if device.type == 'cuda' else 'false'}",
                     f"iterations={4 if quick else 60}", f"val_every={2 if quick else 30}",
                     f"patch={[32, 32, 32] if quick else [32, 64, 64]}", f"base_channels={4 if quick else 16}",
                     "spacing=\"keep\"", "profile_runs=2", "profile_warmup=1",
                     f"compile={str(compile_).lower()}"]  # fmt: skip
        config = load_config("smoke", overrides)
        spec = GridSpec(models=["lcovnet"], kds=["none", "ca"], config=config, preset=f"gpu-selftest-{amp}",
                        data=data, device=str(device), results=work / f"results-{amp}",
                        whole_volume=(32, 96, 96) if quick else (160, 256, 256))  # fmt: skip
        grid = GridContext.open(spec)
        check_grid(spec)
        with _cpu_bf16_guard(device):
            inputs, cells = grid.prepare()
            run_inline(grid, inputs, cells, grid.complete(cells))
        for cell in cells:
            summaries.append({"amp": amp, **grid.store.summary(cell.run_id).to_dict()})
    return summaries


def _cpu_bf16_guard(device: torch.device):
    """On the CPU, train bf16 with oneDNN off.

    oneDNN's AVX-512 bf16 convolution backward-weights kernel returns NaN weight gradients for small feature maps
    (measured with torch 2.13 on an AMD EPYC with avx512_bf16: 22 of 600 backward passes of a 16->32 channel 3x3x3
    Conv3d on a 2x4x4 map, with 1 or 2 threads; 0 of 600 with ``torch.backends.mkldnn`` off or
    ``ONEDNN_MAX_CPU_ISA=AVX2``). The quick grid's 32^3 patches reach such maps in unet3d's bottleneck, so the
    self-test would fail on a healthy project; the native kernels still run every autocast path.
    """
    return torch.backends.mkldnn.flags(enabled=device.type != "cpu")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gpu_selftest", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default auto)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the CPU mode the tests use)")
    parser.add_argument("--compile", action="store_true", help="also train under torch.compile")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    quick = args.quick or device.type == "cpu"
    print(json.dumps(environment(), indent=1))
    start = time.perf_counter()
    headers = ["model", "patch", "fp32 ms", "amp ms", "amp/fp32", "fp32 MB", "amp MB", "device"]
    print(tabulate(_latency_table(device, quick), headers=headers))
    with tempfile.TemporaryDirectory() as tmp:
        rows = [[s["amp"], s["model"], s["kd"], s["iterations"], f"{s['dice_mean']:.3f}", f"{s['hd95_mean']:.1f}",
                 f"{s['train_seconds']:.1f}", f"{s['latency_ms_median']:.2f}"]
                for s in _grid(device, quick, args.compile, Path(tmp))]  # fmt: skip
    print(tabulate(rows, headers=["amp", "model", "kd", "iterations", "Dice", "HD95", "train s", "latency ms"]))
    print(f"gpu_selftest: all paths ran on {device} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
