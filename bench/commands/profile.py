"""``bench profile``: parameters, MACs, latency and peak memory of registered models.

MACs are counted by tracing with fvcore plus handlers for every 3D op the registered networks use (GFLOPs = 2 x
GMACs); ``uncounted_ops`` lists any op left without a handler. thop's count is shown as a cross-check, with the
reasons it is known to be wrong for a model. Latency is the median (and p90) of timed forward passes after warm-up:
CUDA events on a GPU, ``perf_counter`` with a fixed thread count on the CPU. "GMAC/s" is the MACs over the median
latency and "% of peak" its share of this machine's measured limit: a dense square GEMM (2048 on the CPU, 8192 on a
GPU) timed in the same process, precision (--amp) and threads; far below it a network is bound by memory traffic and
element-wise work, near it by its MACs. Peak memory is
``torch.cuda.max_memory_allocated`` on a GPU and the peak resident-memory increase on the CPU.

--whole-volume D,H,W adds the whole-CT time: Gaussian-blended sliding windows of --patch at --overlap over a random
volume of that size (160,256,256 is an abdominal CT), through blending and argmax, after one warm-up window: what a
clinic waits for the network, where the latency column is one window.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from tabulate import tabulate

from bench.console import Progress
from bench.errors import BenchError
from bench.list_args import parse_int_list, parse_name_list


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "profile",
        help="count parameters and MACs, time latency and peak memory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--models", required=True, help="comma-separated registered names (see `bench list`)")
    p.add_argument("--classes", type=int, default=17, help="output classes incl. background (default 17, WORD)")
    p.add_argument("--in-channels", type=int, default=1, help="input channels (default 1)")
    p.add_argument("--patch", default="64,128,128", help="input patch D,H,W (default 64,128,128)")
    p.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default auto)")
    p.add_argument("--amp", default="off", choices=["bf16", "fp16", "off"], help="autocast precision (default off)")
    p.add_argument("--channels-last", action="store_true", help="use torch.channels_last_3d memory format")
    p.add_argument("--warmup", type=int, default=3, help="untimed warm-up passes (default 3)")
    p.add_argument("--runs", type=int, default=10, help="timed passes (default 10)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads to fix and record (default: torch's)")
    p.add_argument("--no-thop", action="store_true", help="skip thop's cross-check count")
    p.add_argument(
        "--whole-volume",
        metavar="D,H,W",
        help="also time sliding-window inference over a volume of this size, e.g. 160,256,256 (windows of --patch)",
    )
    p.add_argument("--overlap", type=float, default=0.5, help="window overlap for --whole-volume (default 0.5)")
    p.add_argument("--sw-batch", type=int, default=1, help="windows per forward pass for --whole-volume (default 1)")
    p.add_argument("--json", type=Path, help="write the records as a JSON list")
    p.add_argument("--csv", type=Path, help="write the records as CSV")
    p.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace):
    from bench.device import resolve_device
    from bench.profiling.profile import ProfileSettings

    if args.classes < 2:
        raise BenchError(f"--classes must be at least 2 (background + one organ), got {args.classes}")
    for flag, value in (("--in-channels", args.in_channels), ("--batch", args.batch), ("--runs", args.runs)):
        if value < 1:
            raise BenchError(f"{flag} must be positive, got {value}")
    if args.warmup < 0:
        raise BenchError(f"--warmup must be zero or more, got {args.warmup}")
    if args.threads is not None and args.threads < 1:
        raise BenchError(f"--threads must be positive, got {args.threads}")
    if not 0 <= args.overlap < 1:
        raise BenchError(f"--overlap must lie in [0, 1), got {args.overlap}")
    if args.sw_batch < 1:
        raise BenchError(f"--sw-batch must be positive, got {args.sw_batch}")
    whole = tuple(parse_int_list(args.whole_volume, "--whole-volume", length=3)) if args.whole_volume else None
    return ProfileSettings(
        classes=args.classes,
        in_channels=args.in_channels,
        patch=tuple(parse_int_list(args.patch, "--patch", length=3)),
        batch=args.batch,
        device=resolve_device(args.device),
        amp=args.amp,
        channels_last=args.channels_last,
        warmup=args.warmup,
        runs=args.runs,
        threads=args.threads,
        thop=not args.no_thop,
        whole_volume=whole,
        overlap=args.overlap,
        sw_batch_size=args.sw_batch,
    )


def run(args: argparse.Namespace) -> int:
    import models
    from bench.atomic import atomic_write_json, atomic_write_text
    from bench.networks import check_patch
    from bench.profiling.profile import profile_model

    names = parse_name_list(args.models, "--models")
    for name in names:
        models.model_info(name)  # an unknown name is a usage error (bench/cli.py converts it)
    settings = settings_from_args(args)
    for name in names:
        check_patch(name, settings.patch)
    with Progress(len(names), "profile", "models") as bar:
        records = [profile_model(name, settings) for name in bar.track(names)]
    print(format_table(records))
    notes = {r["model"]: r["thop_note"] for r in records if r["thop_note"]}
    for model, note in notes.items():
        print(f"thop caveat for {model}: {note}")
    if args.json:
        atomic_write_json(args.json, records)
    if args.csv:
        atomic_write_text(args.csv, _to_csv(records))
    return 0


def format_table(records: list[dict]) -> str:
    rows = [
        [
            r["model"],
            f"{r['params'] / 1e6:.3f}",
            f"{r['gmacs']:.2f}",
            f"{r['gmacs_thop']:.2f}" if r["gmacs_thop"] is not None else "-",
            ",".join(r["uncounted_ops"]) or "none",
            f"{r['latency_ms_median']:.1f}",
            f"{r['latency_ms_p90']:.1f}",
            f"{r['gmacs_per_s']:.1f}",
            f"{100 * r['peak_share']:.1f}",
            f"{r['peak_mem_mb']:.0f}",
            *([f"{r['whole_ct_seconds']:.2f}", r["whole_ct_windows"]] if r["whole_ct_seconds"] is not None else []),
        ]
        for r in records
    ]
    first = records[0]
    title = (
        f"patch {'x'.join(map(str, first['patch']))}, batch {first['batch']}, {first['classes']} classes, "
        f"device {first['device']}, amp {first['amp']}, threads {first['threads']}, torch {first['torch']}; "
        f"peak {first['peak_gmacs_per_s']:.1f} GMAC/s ({first['peak_kernel']}, same precision and threads)"
    )
    headers = ["model", "params (M)", "GMACs", "GMACs (thop)", "uncounted ops", "latency ms (median)",
               "latency ms (p90)", "GMAC/s", "% of peak", "peak mem (MB)"]  # fmt: skip
    if first["whole_ct_seconds"] is not None:
        headers += [f"whole CT {'x'.join(map(str, first['whole_volume']))} (s)", "windows"]
    return title + "\n" + tabulate(rows, headers=headers)


def _to_csv(records: list[dict]) -> str:
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(records[0]))
    writer.writeheader()
    for record in records:
        writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in record.items()})
    return buffer.getvalue()
