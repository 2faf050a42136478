"""The regression gate has teeth: real bugs planted in the code are caught by `bench check`'s exact checks.

Each bug is planted in every Python process of a real `bench run` (the CLI and its profiling subprocess) through a
``sitecustomize`` module on ``PYTHONPATH``, then `bench check` runs unmodified against a baseline written from a
healthy run of the same tiny protocol; a bug in the evaluation path is planted in `bench check` itself, which
evaluates the baseline's reference checkpoint. Two training iterations suffice: the exact checks compare the
first-step values (losses, the KD term's gradient norm, the parameters optimised), the parameter count, the MACs and
the reference checkpoint's metrics, which need no training to converge, so these catches hold on any CPU.
The four KD bugs (a detached KD term, a teacher in train mode, adapters left out of the optimiser, a teacher of
another seed) are also what the smoke protocol's KD-gain checks catch after training (see the README); here they
fail the exact checks that any baseline has.
"""

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.bench.runutil import TINY_RUN, bench_cmd

# One xdist worker runs the module, so its healthy run (the module fixture) is trained once.
pytestmark = pytest.mark.xdist_group("gate-teeth")

# name -> (planted code, the failing check it must produce, where it is planted: "run" with the healthy teacher's
# weights, "run+teacher" training the teacher too, or "check")
BUGS = {
    "kd_sign_flipped": (
        """
        import kd_methods.ca as ca
        _compute = ca.ClassAffinityKD.compute
        ca.ClassAffinityKD.compute = lambda self, *args: -_compute(self, *args)
        """,
        "smoke/lcovnet/kd=ca first_step.kd_loss (seed 0)",
        "run",
    ),
    "dice_term_weighted_0": (
        """
        import bench.training.losses as losses
        _init = losses.SoftDiceCELoss.__init__
        losses.SoftDiceCELoss.__init__ = lambda self, dice_weight=1.0, ce_weight=1.0, **kw: _init(self, 0.0, ce_weight,
                                                                                                   **kw)
        """,
        "smoke/lcovnet/kd=none first_step.seg_loss (seed 0)",
        "run",
    ),
    "labels_off_by_one": (
        """
        import numpy as np
        import bench.data.sampler as sampler
        _crop = sampler._crop
        def _shifted(*args, **kwargs):
            image, label = _crop(*args, **kwargs)
            return image, np.where(label > 0, label - 1, 0).astype(label.dtype)
        sampler._crop = _shifted
        """,
        "smoke/lcovnet/kd=none first_step.seg_loss (seed 0)",
        "run",
    ),
    "parameter_count_doubled": (
        """
        import torch
        import models._registry as registry
        _info = registry._MODELS["lcovnet"]
        def _doubled(*args, **kwargs):
            model = _info.factory(*args, **kwargs)
            model.extra = torch.nn.Parameter(torch.zeros(sum(p.numel() for p in model.parameters())))
            return model
        registry._MODELS["lcovnet"] = registry.ModelInfo(**{**_info.__dict__, "factory": _doubled})
        """,
        "smoke/lcovnet/kd=none params",
        "run",
    ),
    "evaluation_labels_off_by_one": (
        """
        import bench.metrics as metrics
        _evaluate_case = metrics.evaluate_case
        def _shifted(case_id, pred, gt, spacing, labels):
            return _evaluate_case(case_id, (pred + 1) * (pred > 0) % (max(labels) + 1), gt, spacing, labels)
        metrics.evaluate_case = _shifted
        """,
        ") reference evaluation",
        "check",
    ),
    "kd_term_detached_in_the_trainer": (
        """
        import torch
        import bench.training.trainer as trainer
        class _Detached(torch.nn.Module):
            def __init__(self, kd):
                super().__init__()
                self.inner, self.seg_loss_weight = kd, getattr(kd, "seg_loss_weight", 1.0)
            def forward(self, *args):
                return self.inner(*args).detach()
        _init = trainer.Trainer.__init__
        def _planted(self, *args, **kwargs):
            _init(self, *args, **kwargs)
            if self.kd is not None:
                self.kd = _Detached(self.kd)
        trainer.Trainer.__init__ = _planted
        """,
        "smoke/lcovnet/kd=ca first_step.kd_grad_norm (seed 0)",
        "run",
    ),
    "teacher_left_in_train_mode": (
        """
        import bench.training.trainer as trainer
        _init = trainer.Trainer.__init__
        def _planted(self, *args, **kwargs):
            _init(self, *args, **kwargs)
            if self.teacher is not None:
                self.teacher.train()
        trainer.Trainer.__init__ = _planted
        """,
        "smoke/lcovnet/kd=ca first_step.kd_loss (seed 0)",
        "run",
    ),
    "fitnet_adapters_not_optimised": (
        """
        import bench.training.trainer as trainer
        _make = trainer.Trainer._make_optimizer
        def _planted(self, params):
            own = {id(p) for p in self.model.parameters()}
            return _make(self, [p for p in params if id(p) in own])
        trainer.Trainer._make_optimizer = _planted
        """,
        "smoke/lcovnet/kd=fitnet first_step.optimized_params (seed 0)",
        "run",
    ),
    "teacher_of_another_seed": (
        """
        import dataclasses
        import bench.pipeline.cell as cell
        _run_owned = cell._run_owned
        def _planted(c, *args, **kwargs):
            return _run_owned(dataclasses.replace(c, seed=c.seed + 1) if c.is_teacher else c, *args, **kwargs)
        cell._run_owned = _planted
        """,
        "smoke/lcovnet/kd=ca first_step.kd_loss (seed 0)",
        "run+teacher",
    ),
}


def _run(data: Path, results: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """lcovnet without KD, with CA-KD and with FitNet (adapters), two iterations of the tiny protocol (no whole-CT
    time: no check uses it)."""
    args = bench_cmd("run", "--data", str(data), "--results", str(results), "--models", "lcovnet", "--kd", "ca,fitnet",
                     *TINY_RUN, "--set", "iterations=2", "--set", "val_every=2", "--whole-volume", "none",
                     *extra)  # fmt: skip
    return subprocess.run(args, capture_output=True, text=True, timeout=900, env=env)


@pytest.fixture(scope="module")
def healthy(tiny_dataset, trained_run, tmp_path_factory) -> tuple[Path, Path, Path]:
    """A healthy run of lcovnet without KD, with CA-KD and with FitNet, its baseline (students only: later runs reuse
    the teacher's weights through --teacher-checkpoint instead of training it again), those weights and the healthy
    results. The baseline's reference checkpoint is the session's ``trained_run``, which segments organs (after 2
    iterations a network predicts only background, and a shifted label map would go unseen)."""
    root = tmp_path_factory.mktemp("healthy")
    proc = _run(tiny_dataset, root / "results")
    assert proc.returncode == 0, proc.stderr[-3000:]
    baseline = root / "baseline.json"
    reference = trained_run[0] / "runs" / trained_run[1]
    update = subprocess.run(bench_cmd("check", "--update", "--baseline", str(baseline), "--results",
                                      str(root / "results"), "--reference", str(reference), "--reference-data",
                                      str(tiny_dataset)), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert update.returncode == 0, update.stderr
    data = json.loads(baseline.read_text())
    data["entries"] = [e for e in data["entries"] if e["model"] == "lcovnet"]
    baseline.write_text(json.dumps(data))
    teacher = next((root / "results" / "runs").glob("*unet3d__kd-none*")) / "weights.pt"
    return baseline, teacher, root / "results"


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_planted_bug_fails_the_gate_naming_entry_and_check(bug, healthy, tiny_dataset, tmp_path) -> None:
    baseline, teacher, healthy_results = healthy
    code, failed_check, where = BUGS[bug]
    in_check = where == "check"
    (tmp_path / "plant").mkdir()
    (tmp_path / "plant" / "sitecustomize.py").write_text(textwrap.dedent(code))
    planted = {**os.environ, "PYTHONPATH": str(tmp_path / "plant")}
    results = healthy_results  # a bug planted in `bench check` is checked against the healthy runs
    if not in_check:
        results = tmp_path / "results"
        teacher_args = [] if where == "run+teacher" else ["--teacher-checkpoint", str(teacher)]
        proc = _run(tiny_dataset, results, *teacher_args, env=planted)
        assert proc.returncode == 0, proc.stderr[-3000:]
    check = subprocess.run(bench_cmd("check", "--baseline", str(baseline), "--results", str(results)),
                           capture_output=True, text=True, timeout=300, env=planted if in_check else None)  # fmt: skip
    assert check.returncode == 1, check.stdout + check.stderr
    failures = check.stdout.split("FAIL: ")[1]
    assert f"{failed_check}:" in failures, failures
    assert " vs " in failures.split(f"{failed_check}:")[1].splitlines()[0]  # the numbers are named


def test_healthy_rerun_passes_the_gate(healthy, tiny_dataset, tmp_path) -> None:
    baseline, teacher, _ = healthy
    proc = _run(tiny_dataset, tmp_path / "results", "--teacher-checkpoint", str(teacher))
    assert proc.returncode == 0, proc.stderr[-3000:]
    check = subprocess.run(bench_cmd("check", "--baseline", str(baseline), "--results", str(tmp_path / "results")),
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
