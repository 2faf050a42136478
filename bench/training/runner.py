"""``bench run``: the benchmark grid. For each seed: the teacher once (when distilling), then for each model a run
without KD and one per KD method; each run is trained, evaluated on the test split, profiled and stored.

A complete run (its ``summary.json`` exists) is skipped when asked for again with the same configuration unless
``force``; an interrupted run resumes from its last checkpoint.
"""

from __future__ import annotations

import inspect
import math
import shutil
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
import torch
from torch import nn

import kd_methods
import models
from bench.deploy.spec import SPEC_FILE, DeploySpec
from bench.device import resolve_device
from bench.environment import environment
from bench.errors import BenchError
from bench.profiling.profile import ProfileSettings, build_model, check_patch, profile_in_fresh_process
from bench.store import ResultsStore, atomic_write_json, make_run_id
from bench.training.checkpoint import load_checkpoint, load_weights
from bench.training.config import RunConfig
from bench.training.distributed import DistContext
from bench.training.trainer import Trainer, seed_everything


@dataclass
class GridSpec:
    """What ``bench run`` was asked to do."""

    models: list[str]
    kds: list[str]
    config: RunConfig
    preset: str
    seeds: list[int] = field(default_factory=lambda: [0])
    data: Path | None = None
    labels: Path | None = None
    fold: int = 0
    teacher: str | None = None
    teacher_checkpoint: Path | None = None
    device: str = "auto"
    results: Path = Path("results")
    force: bool = False
    restart: bool = False
    save_predictions: bool = False
    eval_workers: int = 0
    whole_volume: tuple[int, int, int] | None = (160, 256, 256)  # whole-CT time per model; None skips it


@dataclass
class _Data:
    name: str
    labels: dict[int, str]
    num_classes: int
    in_channels: int
    prepared: dict  # case_id -> PreparedCase
    originals: dict  # case_id -> Case (original files)
    preprocessing: dict = field(default_factory=dict)  # PreprocessSettings as a dict
    ct_stats: dict | None = None  # the training set's intensity statistics ('ct' normalisation)
    split_ids: tuple[list[str], list[str]] = field(default_factory=lambda: ([], []))  # training and test ids


def model_kwargs(name: str, config: RunConfig) -> dict:
    """Width override from the preset, for models whose factory takes ``base_channels``."""
    if config.base_channels <= 0:
        return {}
    params = inspect.signature(models.model_info(name).factory).parameters
    return {"base_channels": config.base_channels} if "base_channels" in params else {}


def validate_kd_name(name: str) -> None:
    for part in name.split("+"):
        try:
            kd_methods.kd_method_info(part)
        except kd_methods.UnknownKDMethodError as err:
            raise BenchError(f"--kd: {err}") from None


class GridRunner:
    """Runs a :class:`GridSpec`; rank 0 evaluates, profiles and writes, every rank trains."""

    def __init__(self, spec: GridSpec, ctx: DistContext | None = None) -> None:
        self.spec, self.config, self.ctx = spec, spec.config, ctx or DistContext()
        self.store = ResultsStore(spec.results)
        self.device = resolve_device(spec.device)
        if self.ctx.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.ctx.local_rank)
        self.teacher_name = spec.teacher or self.config.teacher
        self._profiles: dict[str, dict] = {}
        self._check_names()

    def _check_names(self) -> None:
        names = list(self.spec.models)
        if any(k != "none" for k in self.spec.kds):
            names.append(self.teacher_name)
        for name in names:
            try:
                models.model_info(name)
            except models.UnknownModelError as err:
                raise BenchError(str(err)) from None
            check_patch(name, tuple(self.config.patch))
            check_patch(name, tuple(self.config.eval_patch()))
        for kd in self.spec.kds:
            if kd != "none":
                validate_kd_name(kd)

    # -- data -----------------------------------------------------------------------------------------------------
    def prepare_data(self) -> tuple[_Data, list, list, list]:
        from bench.data.check import check_dataset
        from bench.data.layouts import load_dataset
        from bench.data.preprocess import PreprocessSettings, load_prepared, prepare_cases
        from bench.data.splits import split_cases
        from bench.data.synth import ensure_default_dataset

        path = Path(self.spec.data) if self.spec.data is not None else ensure_default_dataset()
        dataset = load_dataset(path, self.spec.labels)
        check_dataset(dataset, workers=2).raise_for_issues()
        splits_file = self.store.root / "splits" / f"{dataset.name}.json"
        train, val, test = split_cases(dataset, self.spec.fold, 0, splits_file, n_folds=self.config.folds)
        if not train or not test:
            raise BenchError(f"{path}: need training and test cases, got {len(train)} and {len(test)}")
        window = tuple(self.config.window) if self.config.normalization == "window" else None
        settings = PreprocessSettings(
            target_spacing=self._target_spacing(train),
            normalization=self.config.normalization,
            window=window,
            crop=self.config.crop,
        )
        cases = train + val + test
        workers = min(2, len(cases))
        prepared = prepare_cases(cases, settings, self.store.root / "cache", workers=workers, fit_cases=train)
        by_id = {p.case_id: p for p in prepared}
        labels = {int(k): v for k, v in dataset.labels.items()}
        data = _Data(dataset.name, labels, max(labels) + 1, len(cases[0].images), by_id, {c.case_id: c for c in cases},
                     asdict(settings), load_prepared(prepared[0])[2]["ct_stats"],
                     ([c.case_id for c in train], [c.case_id for c in test]))  # fmt: skip
        val = val[: self.config.val_cases]
        return data, [by_id[c.case_id] for c in train], [by_id[c.case_id] for c in val], test

    def _target_spacing(self, train: list) -> tuple[float, float, float] | None:
        spacing = self.config.spacing
        if spacing == "keep":
            return None
        if spacing == "median":
            reader = sitk.ImageFileReader()
            found = []
            for case in train:
                reader.SetFileName(str(case.images[0]))
                reader.ReadImageInformation()
                found.append(reader.GetSpacing()[::-1])
            return tuple(float(s) for s in np.median(np.array(found), axis=0))
        return tuple(float(s) for s in spacing)

    # -- grid -----------------------------------------------------------------------------------------------------
    def run(self) -> list[str]:
        data, train, val, test = self.prepare_data()
        done = []
        for seed in self.spec.seeds:
            teacher = None
            if any(k != "none" for k in self.spec.kds):
                teacher = self._teacher(data, train, val, test, seed)
                if not teacher[1].startswith("checkpoint:"):
                    done.append(teacher[1])
            for name in self.spec.models:
                none_id = self._run_one(data, train, val, test, name, "none", seed, None)
                if none_id not in done:
                    done.append(none_id)
                for kd in self.spec.kds:
                    if kd != "none":
                        done.append(self._run_one(data, train, val, test, name, kd, seed, teacher, none_id))
        return done

    def _teacher(self, data: _Data, train, val, test, seed: int) -> tuple[nn.Module, str]:
        name = self.teacher_name
        model = build_model(name, data.in_channels, data.num_classes, **model_kwargs(name, self.config))
        if self.spec.teacher_checkpoint is not None:
            path = self.spec.teacher_checkpoint
            try:
                model.load_state_dict(load_weights(path))
            except (RuntimeError, OSError) as err:
                first = str(err).strip().splitlines()[0]
                raise BenchError(f"--teacher-checkpoint {path} does not fit {name} with {data.num_classes} classes: "
                                 f"{first}") from None  # fmt: skip
            return model, f"checkpoint:{path.name}"
        run_id = self._run_one(data, train, val, test, name, "none", seed, None)
        model.load_state_dict(load_checkpoint(self.store.run_dir(run_id) / "weights.pt")["model"])
        return model, run_id

    def _run_one(self, data: _Data, train, val, test, name: str, kd: str, seed: int, teacher, none_id=None) -> str:
        teacher_model, teacher_run = teacher if teacher else (None, None)
        run_id = make_run_id(name, kd, self.teacher_name if teacher else None, seed, data.name, self.config.hash())
        run_dir = self.store.run_dir(run_id)
        if self.store.is_complete(run_id) and not self.spec.force:
            self._say(f"skip {run_id}: complete (use --force to run it again)")
            return run_id
        if self.ctx.is_main and (self.spec.force or self.spec.restart):
            for stale in ("checkpoint_last.pt", "checkpoint_best.pt", "weights.pt", "train_log.csv", "summary.json"):
                (run_dir / stale).unlink(missing_ok=True)
            shutil.rmtree(run_dir / "predictions", ignore_errors=True)
        self.ctx.barrier()
        self._say(f"run {run_id}")
        seed_everything(seed, self.config.deterministic)
        student = build_model(name, data.in_channels, data.num_classes, **model_kwargs(name, self.config))
        method = None
        hparams: dict = {}
        if kd != "none":
            method = kd_methods.create_kd_method(
                kd, student.feature_channels, teacher_model.feature_channels, data.num_classes
            )
            hparams = kd_hparams(method)
            if self.config.kd_init == "student" and none_id:
                student.load_state_dict(load_checkpoint(self.store.run_dir(none_id) / "weights.pt")["model"])
        if self.ctx.is_main:
            atomic_write_json(run_dir / "config.json", {
                "model": name, "kd": kd, "teacher": self.teacher_name if teacher else None, "teacher_run": teacher_run,
                "seed": seed, "dataset": data.name, "preset": self.spec.preset, "preset_hash": self.config.hash(),
                "model_kwargs": model_kwargs(name, self.config), "kd_hparams": hparams, "config": self.config.to_dict(),
            })  # fmt: skip
            atomic_write_json(run_dir / "env.json", environment())
            self._deploy_spec(run_id, name, data).write(run_dir / SPEC_FILE)
        trainer = Trainer(
            model=student, config=self.config, train_cases=train, val_cases=val, device=self.device, run_dir=run_dir,
            seed=seed, kd=method, teacher=teacher_model, ctx=self.ctx, label=f"{name}/{kd}/s{seed}",
        )  # fmt: skip
        result = trainer.fit()
        if self.ctx.is_main:
            student.load_state_dict(load_checkpoint(result.weights)["model"])
            from bench.training.checkpoint import save_checkpoint

            save_checkpoint(run_dir / "weights.pt", {"model": student.state_dict(), "source": result.weights.name})
            per_case = self._evaluate(student, data, test, run_dir)
            summary = self._summary(run_id, name, kd, seed, data, teacher, teacher_run, hparams, result, per_case)
            self.store.record_run(run_id, summary, per_case)
            self._say(f"done {run_id}: Dice {summary['dice_mean']:.4f}, HD95 {summary['hd95_mean']:.2f} mm")
        self.ctx.barrier()
        return run_id

    def _deploy_spec(self, run_id: str, name: str, data: _Data) -> DeploySpec:
        """What `bench predict` and `bench export` need besides the weights to repeat this run's evaluation."""
        return DeploySpec(
            model=name, in_channels=data.in_channels, num_classes=data.num_classes, labels=data.labels,
            preprocessing=data.preprocessing, patch=list(self.config.eval_patch()), overlap=self.config.overlap,
            sw_batch_size=self.config.sw_batch_size, amp=self.config.amp, model_kwargs=model_kwargs(name, self.config),
            ct_stats=data.ct_stats, run_id=run_id, cases={"train": data.split_ids[0], "test": data.split_ids[1]},
        )  # fmt: skip

    # -- evaluation -----------------------------------------------------------------------------------------------
    def _evaluate(self, model: nn.Module, data: _Data, test: list, run_dir: Path) -> pd.DataFrame:
        from tqdm import tqdm

        from bench.data.preprocess import load_prepared, restore_to_original
        from bench.device import amp_dtype, memory_format
        from bench.inference import predict_labels
        from bench.metrics import evaluate_case

        rows = []
        fmt = memory_format(self.config.channels_last and self.device.type == "cuda")
        for case in tqdm(test, desc="evaluate", unit="case", leave=False, file=sys.stderr):
            image, _, meta = load_prepared(data.prepared[case.case_id])
            pred = predict_labels(
                model, torch.from_numpy(np.array(image)), tuple(self.config.eval_patch()),
                overlap=self.config.overlap, sw_batch_size=self.config.sw_batch_size, device=self.device,
                amp_dtype=amp_dtype(self.config.amp, self.device), memory_format=fmt,
            )  # fmt: skip
            restored = restore_to_original(pred, meta)
            gt_image = sitk.ReadImage(str(case.label))
            if self.spec.save_predictions:
                (run_dir / "predictions").mkdir(exist_ok=True)
                sitk.WriteImage(restored, str(run_dir / "predictions" / f"{case.case_id}.nii.gz"))
            pred_arr = sitk.GetArrayFromImage(restored)
            gt_arr = sitk.GetArrayFromImage(gt_image)
            spacing = tuple(reversed(gt_image.GetSpacing()))
            rows.extend(evaluate_case(case.case_id, pred_arr, gt_arr, spacing, data.labels))
        return pd.DataFrame(rows)

    def _profile(self, name: str, data: _Data) -> dict:
        if name not in self._profiles:
            settings = ProfileSettings(
                classes=data.num_classes, in_channels=data.in_channels, patch=tuple(self.config.patch), batch=1,
                device=self.device, amp=self.config.amp, channels_last=self.config.channels_last and
                self.device.type == "cuda", warmup=self.config.profile_warmup, runs=self.config.profile_runs,
                thop=False, model_kwargs=model_kwargs(name, self.config), whole_volume=self.spec.whole_volume,
                window=tuple(self.config.eval_patch()), overlap=self.config.overlap,
                sw_batch_size=self.config.sw_batch_size,
            )  # fmt: skip
            self._profiles[name] = profile_in_fresh_process(name, settings)
        return self._profiles[name]

    def _summary(self, run_id, name, kd, seed, data, teacher, teacher_run, hparams, result, per_case) -> dict:
        from bench.metrics import summarize

        prof = self._profile(name, data)
        metrics = summarize(per_case)
        return {
            "run_id": run_id, "model": name, "kd": kd, "teacher": self.teacher_name if teacher else None,
            "teacher_run": teacher_run, "seed": seed, "preset": self.spec.preset, "preset_hash": self.config.hash(),
            "dataset": data.name, "patch": list(self.config.patch), "device": str(self.device),
            "latency_device": prof["device"], "params": prof["params"], "gmacs": prof["gmacs"],
            "uncounted_ops": prof["uncounted_ops"], "latency_ms_median": prof["latency_ms_median"],
            "latency_ms_p90": prof["latency_ms_p90"], "peak_mem_mb": prof["peak_mem_mb"],
            "whole_volume": prof["whole_volume"], "whole_ct_seconds": prof["whole_ct_seconds"],
            **metrics,
            "train_seconds": result.train_seconds, "iterations": result.iterations,
            "best_val_dice": None if result.best_val_dice is None or math.isnan(result.best_val_dice)
            else result.best_val_dice,
            "kd_hparams": hparams, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__,
        }  # fmt: skip

    def _say(self, text: str) -> None:
        if self.ctx.is_main:
            print(text, file=sys.stderr, flush=True)


def kd_hparams(method: nn.Module) -> dict:
    """The scalar settings of a KD method (of each part, for a ``ca+ms`` composition), for the run record."""
    parts = getattr(method, "parts", None)
    if isinstance(parts, nn.ModuleDict):
        return {name: kd_hparams(part) for name, part in parts.items()}
    return {k: v for k, v in vars(method).items() if k != "training" and not k.startswith("_") and _is_scalar(v)}


def _is_scalar(value: object) -> bool:
    return isinstance(value, int | float | str | bool) or (
        isinstance(value, list | tuple) and all(isinstance(v, int | float) for v in value)
    )
