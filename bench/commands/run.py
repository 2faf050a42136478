"""``bench run``: train, evaluate, profile and store every (model, KD method, seed) of a benchmark grid.

Without --data the built-in synthetic abdominal CT set is generated once (see `bench data synth`) and used.
Without --preset, `default` is used when a GPU is present and `smoke` otherwise. With --kd, the teacher
(--teacher, default from the preset: unet3d; several, comma-separated, are an axis of the grid) is trained once per
dataset, preset and seed and cached in the results store, or loaded from --teacher-checkpoint. It trains with the
students' protocol unless given its own: `--set teacher.KEY=VALUE` (e.g. teacher.iterations=1600) changes a key for
the teachers alone; keys that decide the data (spacing, normalization, window, crop, folds, val_cases, organs) stay
shared.
Every student is also run without KD (`none`) so that gains can be computed. `ca+ms` is one run with both losses;
`ca,ms` are two runs.
KD runs start from scratch with the same iteration budget unless --kd-init student.

Models, KD methods and the teacher take arguments: NAME:KEY=VALUE[:KEY=VALUE...], values as TOML scalars or
lists (`ca:weight=0.1`, `nnunet:base_channels=16`, `ms:norm=global`); `|` inside a value sweeps it, one run per
value (`--kd 'ca:weight=0.05|0.1|0.2'`; quote it for the shell). Keys are checked against the factory's signature
(`bench list --kd ca` lists them); runs with arguments get them in their run id, summary.json and the report.

Complete runs are skipped (use --force to redo them); interrupted runs resume from their last checkpoint
(use --restart to discard it). Multi-GPU: torchrun --nproc-per-node N -m bench run ...

Where the runs (cells of the grid) are trained: --executor inline (default) trains them one after another in this
process; --executor local --jobs N in N worker processes (one GPU each, or the CPU cores shared out); --executor
slurm submits one SLURM job per cell through submitit (a KD cell's job waits for its teacher's) and returns; follow
with `bench status --results DIR`, or pass --wait. The data set is checked and preprocessed once, before dispatch.
--dry-run prints the cells, their dependencies and which are complete, and trains nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench import console
from bench.components.syntax import parse_components
from bench.grid.spec import check_grid_size
from bench.list_args import parse_int_list


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="train, evaluate and profile models (with KD methods) and store the results",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--experiment", type=Path, metavar="FILE",
                   help="the grid from an experiment file (TOML: models, kd, seeds, folds, preset, [overrides], "
                   "[teacher]; see experiments/) instead of --models/--kd/--seeds/--preset/--teacher/--folds; --set "
                   "KEY=VALUE still applies on top of the file's [overrides] (teacher.KEY=VALUE to its teachers "
                   "alone); its resolved form is saved as RESULTS/experiments/<name>.toml")  # fmt: skip
    p.add_argument("--models",
                   help="comma-separated registered models with optional arguments, e.g. "
                   "lcovnet,nnunet:base_channels=16 (see `bench list --model NAME`)")  # fmt: skip
    p.add_argument("--kd", default="none",
                   help="comma-separated KD methods with optional arguments and sweeps, e.g. ca,ms or ca+ms or "
                   "'ca:weight=0.05|0.1' (two runs); default none (see `bench list --kd NAME`)")  # fmt: skip
    p.add_argument("--preset", default=None, help="smoke, kd_gap, default, paper or a TOML file (default: by device)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a preset key, e.g. --set iterations=500; teacher.KEY=VALUE for the teachers "
                   "alone, e.g. --set teacher.iterations=1600 (repeatable)")  # fmt: skip
    p.add_argument("--data", type=Path,
                   help="dataset: nnU-Net/MSD/WORD folder, image,label CSV, or BTCV, AMOS22, FLARE22, KiTS23, "
                   "TotalSegmentator, AbdomenCT-1K as distributed (default: built-in)")  # fmt: skip
    p.add_argument("--labels", type=Path, help="organ names if no dataset.json (formats as in bench evaluate --labels)")
    p.add_argument("--modality", default="ct", choices=["ct", "mri", "all"],
                   help="the cases of a set that mixes CT and MRI (AMOS22) to use (default: ct)")  # fmt: skip
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    p.add_argument("--folds", default="0", metavar="N,N|all",
                   help="cross-validation folds, an axis of the grid: e.g. 0,1,2,3,4 or all (the preset's folds "
                   "key, 5 by default); default 0. A data set with its own test split keeps it in every fold, the "
                   "folds then vary the training/validation split")  # fmt: skip
    p.add_argument("--teacher",
                   help="teacher model(s) for KD, with optional arguments; comma-separated teachers are an axis "
                   "(default: the preset's, unet3d)")  # fmt: skip
    p.add_argument("--teacher-checkpoint", type=Path, help="load the teacher's weights instead of training it")
    p.add_argument("--kd-init", choices=["scratch", "student"], help="start KD from scratch or the no-KD student")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default auto)")
    p.add_argument("--results", type=Path, default=Path("results"), help="results store (default results/)")
    p.add_argument("--save-predictions", action="store_true", help="write NIfTI masks in the CT's geometry")
    p.add_argument("--eval-workers", type=int, default=0, help="processes for HD95 (default 0: in-process)")
    p.add_argument("--whole-volume", default="160,256,256", metavar="D,H,W",
                   help="volume for each model's whole-CT time (sliding window at the preset's window and overlap; "
                   "default 160,256,256, an abdominal CT; 'none' skips it)")  # fmt: skip
    p.add_argument("--force", action="store_true", help="re-run complete runs")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", default=True,
                       help="continue interrupted runs from their last checkpoint (the default)")  # fmt: skip
    group.add_argument("--restart", action="store_true", help="discard interrupted runs' checkpoints")
    p.add_argument("--dry-run", action="store_true", help="print the plan (cells, dependencies, states) and stop")
    p.add_argument("--executor", choices=["inline", "local", "slurm"], default="inline",
                   help="inline: one cell after another here (default); local: --jobs worker processes; "
                   "slurm: one SLURM job per cell (needs segkd-bench[slurm])")  # fmt: skip
    p.add_argument("--jobs", type=int, default=2, metavar="N", help="worker processes of --executor local (default 2)")
    p.add_argument("--wait", action="store_true", help="--executor slurm: block until the jobs have ended")
    slurm = p.add_argument_group("SLURM (--executor slurm)")
    slurm.add_argument("--slurm-partition", metavar="NAME", help="partition of the jobs (default: the cluster's)")
    slurm.add_argument("--slurm-gpus", type=int, default=0, metavar="N", help="GPUs per job (default 0)")
    slurm.add_argument("--slurm-cpus", type=int, metavar="N", help="CPUs per job (default: the cluster's)")
    slurm.add_argument("--slurm-mem", metavar="MEM", help="memory per job, e.g. 32G (default: the cluster's)")
    slurm.add_argument("--slurm-time", metavar="TIME", help="time limit per job: minutes or HH:MM:SS; a job that "
                       "reaches it is requeued and resumes from its last checkpoint")  # fmt: skip
    slurm.add_argument("--slurm-opt", action="append", default=[], metavar="KEY=VALUE",
                       help="any other sbatch option, e.g. --slurm-opt account=abc (repeatable)")  # fmt: skip
    p.set_defaults(func=run)


def _check_cheaply(args: argparse.Namespace) -> None:
    """Every argument that can be checked without torch, so that input errors return in a fraction of a second."""
    from bench.errors import BenchError

    if args.experiment is not None:
        _check_experiment_args(args)
    elif args.models is None:
        raise BenchError("give the models to train with --models (or a whole grid with --experiment FILE)")
    else:
        _check_grid_names(args)
    if args.teacher_checkpoint is not None and not args.teacher_checkpoint.is_file():
        raise BenchError(f"--teacher-checkpoint {args.teacher_checkpoint} does not exist")
    if args.data is not None and not args.data.exists():
        raise BenchError(f"--data {args.data} does not exist")
    if args.labels is not None and not args.labels.is_file():
        raise BenchError(f"--labels {args.labels} does not exist")
    if args.jobs < 1:
        raise BenchError(f"--jobs must be at least 1, got {args.jobs}")
    if args.executor == "slurm":
        from bench.executors.slurm import check_available, parse_opts, parse_time

        if args.slurm_time is not None:
            parse_time(args.slurm_time)
        parse_opts(args.slurm_opt)
        if not args.dry_run:
            check_available()
    elif args.wait:
        raise BenchError("--wait goes with --executor slurm (the other executors return when the grid is done)")


def _check_grid_names(args: argparse.Namespace) -> None:
    """The models, KD methods, teacher and seeds of the command line: names against the registries (read without
    importing them), the argument syntax (bench.components.syntax; the keys are checked against the factories after the
    imports) and the patch size against each model's stride."""
    from bench.components import static_names as names

    # Without --preset the choice needs torch (is there a GPU?); the overrides are checked against smoke here and
    # against the chosen preset again after the imports.
    config, _ = _configs(args.preset or "smoke", args)
    strides, kd_names = names.model_strides(), names.kd_method_names()
    models = parse_components(args.models, "model", "--models")
    checked = [(m.name, "--models") for m in models]
    kds = parse_components(args.kd, "kd", "--kd")
    for kd in kds:
        names.check_kd_name(kd.name, "--kd", kd_names)
    teachers = []
    if any(kd.name != "none" for kd in kds):
        arg = "--teacher" if args.teacher else "preset key teacher"
        teachers = parse_components(args.teacher or config.teacher, "model", arg)
        checked += [(t.name, arg) for t in teachers]
    for model, arg in checked:
        names.check_model_name(model, arg, strides)
    if args.preset is not None:
        for model, _ in checked:
            names.check_patch_stride(model, config.patch, strides)
            names.check_patch_stride(model, config.eval_patch(), strides)
    seeds = parse_int_list(args.seeds, "--seeds", positive=False)
    check_grid_size(len(models), sum(kd.name != "none" for kd in kds), max(1, len(teachers)), len(set(seeds)),
                    len(_folds(args.folds, config.folds)), args.teacher_checkpoint is None)  # fmt: skip


def _check_experiment_args(args: argparse.Namespace) -> None:
    """An experiment file holds the grid: the flags that also set it are refused, and the file's syntax is
    checked (its names and arguments are checked against the registries after the imports)."""
    from bench.errors import BenchError
    from bench.experiment import load_experiment

    given = [flag for flag, value, default in (
        ("--models", args.models, None), ("--kd", args.kd, "none"), ("--seeds", args.seeds, "0"),
        ("--preset", args.preset, None), ("--teacher", args.teacher, None),
        ("--folds", args.folds, "0"), ("--kd-init", args.kd_init, None),
    ) if value != default]  # fmt: skip
    if given:
        raise BenchError(f"--experiment {args.experiment} holds the grid; drop {', '.join(given)} (or edit the file)")
    if not args.experiment.is_file():
        raise BenchError(f"--experiment {args.experiment} does not exist")
    experiment = load_experiment(args.experiment, check=False).with_overrides(args.overrides)
    kds = sum(kd.name != "none" for kd in experiment.kd_components())
    check_grid_size(len(experiment.model_components()), kds, len(experiment.teacher_components()),
                    len(experiment.seeds), len(experiment.folds), args.teacher_checkpoint is None)  # fmt: skip


def _overrides(args: argparse.Namespace) -> list[str]:
    return [*args.overrides, *([f'kd_init="{args.kd_init}"'] if args.kd_init else [])]


def _configs(preset: str, args: argparse.Namespace):
    """The students' config and the teachers' own (None without ``--set teacher.KEY=VALUE`` or a preset's
    ``[teacher_protocol]``), both checked."""
    from bench.training.config import check_teacher_config, load_config, split_teacher_overrides

    shared, own = split_teacher_overrides(_overrides(args))
    config = load_config(preset, shared)
    if not own and not config.teacher_protocol:
        return config, None
    teacher_config = load_config(preset, [*shared, *own], teacher=True)
    check_teacher_config(config, teacher_config, "--set teacher.* or the preset's [teacher_protocol]")
    return config, teacher_config


def run(args: argparse.Namespace) -> int:
    _check_cheaply(args)

    import torch

    from bench.components.factory_args import check_component, resolve_components
    from bench.errors import BenchError
    from bench.experiment import load_experiment, save_experiment
    from bench.grid.spec import GridSpec
    from bench.pipeline.checks import check_grid
    from bench.pipeline.context import GridContext
    from bench.store_layout import ResultsLayout
    from bench.training.distributed import init_distributed

    if args.experiment is not None:
        experiment = load_experiment(args.experiment).with_overrides(args.overrides)
        grid = _experiment_grid(args.experiment, experiment)
    else:
        experiment = None
        preset = args.preset
        if preset is None:
            preset = "default" if torch.cuda.is_available() else "smoke"
            found = "GPU" if preset == "default" else "no GPU"
            console.note(f"bench run: no --preset given; using '{preset}' ({found} found)")
        teachers = []
        if args.teacher:
            teachers = [str(check_component(c, "model", "--teacher"))
                        for c in parse_components(args.teacher, "model", "--teacher")]  # fmt: skip
        config, teacher_config = _configs(preset, args)
        grid = {
            "models": [str(c) for c in resolve_components(args.models, "model", "--models")],
            "kds": [str(c) for c in resolve_components(args.kd, "kd", "--kd")],
            "config": config,
            "teacher_config": teacher_config,
            "preset": Path(preset).stem,
            "seeds": parse_int_list(args.seeds, "--seeds", positive=False),
            "folds": _folds(args.folds, config.folds),
            "teachers": teachers,
        }
    spec = GridSpec(
        **grid,
        data=args.data,
        labels=args.labels,
        modality=args.modality,
        teacher_checkpoint=args.teacher_checkpoint,
        device=args.device,
        results=args.results,
        whole_volume=None
        if args.whole_volume.strip().lower() == "none"
        else tuple(parse_int_list(args.whole_volume, "--whole-volume", length=3)),
        force=args.force,
        restart=args.restart,
        save_predictions=args.save_predictions,
        eval_workers=args.eval_workers,
    )
    ctx = init_distributed(args.device)
    grid = GridContext.open(spec, ctx)
    check_grid(spec)  # every name, argument and patch size before anything is written
    if experiment is not None and ctx.is_main and not args.dry_run:
        saved = ResultsLayout(args.results).experiment(args.experiment.stem)
        save_experiment(experiment, saved)
        console.note(f"bench run: experiment {args.experiment} resolved into {saved}")
    if ctx.enabled and args.executor != "inline":
        raise BenchError(f"--executor {args.executor} runs one process per cell; under torchrun use --executor inline")
    return _dispatch(args, grid)


def _folds(text: str, n_folds: int) -> list[int]:
    """``--folds``: ``all`` (every fold of the preset's ``folds`` key) or comma-separated folds below it."""
    from bench.errors import BenchError

    if text.strip().lower() == "all":
        return list(range(n_folds))
    folds = list(dict.fromkeys(parse_int_list(text, "--folds", positive=False)))
    if any(not 0 <= f < n_folds for f in folds):
        raise BenchError(f"--folds must be between 0 and {n_folds - 1} (the preset's folds = {n_folds}), got {text!r}")
    return folds


def _experiment_grid(path: Path, experiment) -> dict:
    """The :class:`GridSpec` fields of a resolved experiment."""
    from bench.training.config import check_teacher_config

    config, teacher_config = experiment.config(), experiment.teacher_config()
    check_teacher_config(config, teacher_config, f"{path}: [teacher]")
    return {
        "models": [str(c) for c in experiment.model_components()],
        "kds": [str(c) for c in experiment.kd_components()],
        "config": config,
        "teacher_config": None if teacher_config.hash() == config.hash() else teacher_config,
        "preset": Path(experiment.preset).stem,
        "seeds": experiment.seeds,
        "folds": experiment.folds,
        "teachers": [str(c) for c in experiment.teacher_components()],
    }


def _dispatch(args: argparse.Namespace, grid) -> int:
    """Prepare the data once, plan, then print the plan (--dry-run) or hand the cells to the executor."""
    from bench.executors.show import grid_states, plan_table, status_table
    from bench.store_layout import ResultsLayout

    spec = grid.spec
    inputs, cells = grid.prepare()  # every fold's cases preprocessed before the first cell (or worker) starts
    if args.dry_run:
        print(plan_table(cells, spec.results, spec.force))
        return 0
    complete = grid.complete(cells)
    if args.executor == "inline":
        from bench.executors.inline import run_inline

        progress = run_inline(grid, inputs, cells, complete)
        if grid.dist.is_main:
            print(progress.table())
            console.note(
                f"bench run: {len(cells)} run(s) in {args.results}; see `bench report --results {args.results}`"
            )
        return 0

    ids = [c.run_id for c in cells]
    if args.executor == "local":
        from bench.executors.local import run_local

        failed = run_local(spec, cells, complete, args.jobs)
        grid.store.refresh_index()
        print(status_table(grid_states(spec.results, ids)))
        return 1 if failed else 0
    from bench.executors.slurm import SlurmOptions, parse_opts, parse_time, submit_slurm, wait_for

    options = SlurmOptions(args.slurm_partition, args.slurm_gpus, args.slurm_cpus, args.slurm_mem,
                           None if args.slurm_time is None else parse_time(args.slurm_time),
                           parse_opts(args.slurm_opt))  # fmt: skip
    jobs = submit_slurm(spec, cells, complete, options)
    if not args.wait:
        print(f"bench run: {len(jobs)} job(s) queued, {len(complete)} cell(s) complete already. Follow with "
              f"`bench status --results {spec.results}` (or squeue); logs in "
              f"{ResultsLayout(spec.results).jobs}/<run id>/. "
              "Run the same command again to resume what did not finish.")  # fmt: skip
        return 0
    console.note(f"bench run: {len(jobs)} job(s) queued; waiting for them to end (Ctrl-C stops waiting, not the jobs)")
    wait_for(list(jobs.values()))
    grid.store.refresh_index()
    states = grid_states(spec.results, ids)
    print(status_table(states))
    return 0 if all(s.state == "complete" for s in states) else 1
