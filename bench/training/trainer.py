"""One training protocol for every network, with or without a distillation loss.

Iteration-based: the run is cut into segments of ``val_every`` iterations. Each segment draws its patches from a
loader seeded by (seed, segment), ends with validation (mean foreground Dice) and a checkpoint holding the model,
optimiser, grad scaler, KD adapters, RNG states and iteration. Resuming therefore re-creates exactly the loader
and RNG state an uninterrupted run would have had, without replaying earlier batches.

Ctrl-C (SIGINT) lets the optimiser step under way finish, then writes ``checkpoint_last.pt`` at the current
iteration, mid-segment. Resuming from it re-creates the segment's loader, draws and discards the batches the segment
had already used (sampling and augmentation only, no forward pass) and then restores the RNG states of the moment of
the interrupt, so the resumed run continues bitwise as the uninterrupted one would have (for a given ``workers``
setting, as the loader itself; the losses logged since the last log row are carried in the checkpoint too). A
Ctrl-C during the segment's validation keeps the segment's training and validates on resume.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from bench import console
from bench.atomic import atomic_write_text
from bench.device import amp_dtype, memory_format
from bench.errors import BenchError
from bench.interrupt import DeferredInterrupt
from bench.store import TRAIN_LOG_COLUMNS
from bench.store_layout import RunPaths
from bench.training.checkpoint import CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from bench.training.config import RunConfig
from bench.training.distributed import DistContext, all_reduce_grads
from bench.training.losses import MultiScaleSegLoss, SoftDiceCELoss


@dataclass
class TrainResult:
    """What a finished training leaves behind."""

    iterations: int
    best_val_dice: float | None
    train_seconds: float
    weights: Path  # the checkpoint to evaluate: best on validation or last, as config.eval_checkpoint says
    # iteration 1, before any update: its losses, the KD term's gradient norm, the parameters optimised (bench check)
    first_step: dict[str, float]
    resumed_from: int = 0  # the iteration of the checkpoint this training resumed from (0: started afresh)


@dataclass
class _LoopState:
    """Where the training loop stands; everything a checkpoint written at an interrupt needs."""

    start: float
    iteration: int = 0
    best: float | None = None
    rows: list[dict] = field(default_factory=list)
    window: list[tuple[float, float, float]] = field(default_factory=list)  # step losses since the last log row
    pending_validation: bool = False  # the segment is trained, its validation and checkpoint are still to come
    val_dice: float = math.nan
    saved: int = 0  # the iteration of checkpoint_last.pt (0: none yet)
    # The RNG states a checkpoint written now would hold: (states, loader_made) captured before the segment's
    # loader was made, True for "the current states, loader made", None while a resumed segment skips batches.
    rng: tuple[dict, bool] | bool | None = None


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and torch; in deterministic mode also ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True


def poly_lr(base: float, iteration: int, total: int, exponent: float = 0.9) -> float:
    """nnU-Net's polynomial decay."""
    return base * (1 - iteration / total) ** exponent


def cosine_lr(base: float, iteration: int, total: int) -> float:
    """Cosine decay to 0 (Loshchilov & Hutter, SGDR without restarts): in the last quarter it averages 5 % of
    ``base`` against 14 % for :func:`poly_lr`, so a short run settles before it ends."""
    return base * 0.5 * (1 + math.cos(math.pi * iteration / total))


SCHEDULES = {"poly": poly_lr, "cosine": cosine_lr, "constant": lambda base, iteration, total: base}


class Trainer:
    """Trains ``model`` on prepared cases; ``kd``/``teacher`` add a distillation loss from a frozen teacher."""

    def __init__(
        self,
        *,
        model: nn.Module,
        config: RunConfig,
        train_cases: list,
        val_cases: list,
        device: torch.device,
        run_dir: Path,
        seed: int,
        kd: nn.Module | None = None,
        teacher: nn.Module | None = None,
        ctx: DistContext | None = None,
        label: str = "train",
        ignore_label: int | None = None,
    ) -> None:
        self.config, self.device, self.seed = config, device, seed
        self.paths = RunPaths(Path(run_dir))  # where its log and checkpoints go
        self.ctx = ctx or DistContext()
        self.label = label
        self.mem_format = memory_format(config.channels_last and device.type == "cuda")
        self.amp = amp_dtype(config.amp, device)
        self.model = model.to(device=device, memory_format=self.mem_format)
        self.kd = kd.to(device) if kd is not None else None
        self.teacher = teacher
        if teacher is not None:
            self.teacher = teacher.to(device=device, memory_format=self.mem_format).eval().requires_grad_(False)
        self.train_cases, self.val_cases = train_cases, val_cases
        self.first_step: dict[str, float] = {}
        self._probe: dict[str, float] = {}
        self.seg_loss = MultiScaleSegLoss(SoftDiceCELoss(ignore_label=ignore_label))
        self.ignore_label = ignore_label
        self.seg_weight = getattr(kd, "seg_loss_weight", 1.0) if kd is not None else 1.0
        params = list(self.model.parameters()) + (list(self.kd.parameters()) if self.kd is not None else [])
        self.optimizer = self._make_optimizer(params)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp == torch.float16)
        self.net = self.model
        if self.ctx.enabled:
            ids = [device.index] if device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if config.compile:
            self.net = torch.compile(self.net)

    def _make_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        c = self.config
        if c.optimizer == "adam":
            return torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay)
        return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, nesterov=True, weight_decay=c.weight_decay)

    # -- state ----------------------------------------------------------------------------------------------------
    def _payload(self, state: _LoopState, rng: dict, loader_made: bool) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "kd": self.kd.state_dict() if self.kd is not None else None,
            "iteration": state.iteration,
            "best_val_dice": state.best,
            "elapsed": time.perf_counter() - state.start,
            "rng": rng,
            "config_hash": self.config.hash(),
            "first_step": self.first_step,
            # Mid-segment (interrupt) checkpoints only: see the module docstring.
            "window": list(state.window),
            "loader_made": loader_made,
            "pending_validation": state.pending_validation,
        }

    def _restore(self) -> tuple[_LoopState, dict | None]:
        """The loop state to start from, and the RNG states to set once the segment's loader is re-created (for a
        checkpoint written mid-segment after the loader had drawn from torch's RNG), else None."""
        path = self.paths.checkpoint_last
        if not path.exists():
            return _LoopState(start=time.perf_counter()), None
        hint = "; --restart discards it and trains the run from the start"
        state = load_checkpoint(path, "checkpoint", hint)
        if state.get("config_hash") != self.config.hash():
            raise BenchError(f"{path} was written with another configuration; remove it or use --restart")
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scaler.load_state_dict(state["scaler"])
            if self.kd is not None and state["kd"] is not None:
                self.kd.load_state_dict(state["kd"])
            set_rng_state(state["rng"])
            self.first_step = {k: float(v) for k, v in (state.get("first_step") or {}).items()}
            iteration = int(state["iteration"])
            best, elapsed = state["best_val_dice"], float(state["elapsed"])
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as err:
            detail = f"no {err}" if isinstance(err, KeyError) else str(err).strip().splitlines()[0]
            raise CheckpointError(f"checkpoint {path} does not fit this run ({detail}){hint}") from None
        log_path = self.paths.train_log
        rows = []
        if log_path.exists():
            try:
                log = pd.read_csv(log_path)
                rows = log[log["iteration"] <= iteration].to_dict("records")
            except (ValueError, KeyError, TypeError, pd.errors.EmptyDataError) as err:
                raise BenchError(f"training log {log_path} is unreadable ({type(err).__name__}){hint}") from None
        loop = _LoopState(
            iteration=iteration, best=best, start=time.perf_counter() - elapsed, rows=rows,
            window=[tuple(w) for w in state.get("window", [])],
            pending_validation=state.get("pending_validation", False), saved=iteration,
        )  # fmt: skip
        return loop, state["rng"] if state.get("loader_made") else None

    # -- loop -----------------------------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        loop, rng_after_loader = self._restore()
        resumed_from = loop.iteration
        if resumed_from:
            console.note(f"resuming {self.label} from iteration {resumed_from}")
        interrupt = DeferredInterrupt()
        # What a checkpoint written now would hold as RNG state: None while the loader draws the batches a resumed
        # segment had already used (the checkpoint on disk stays valid, nothing is written then).
        loop.rng = (rng_state(), False)
        bar = console.Progress(self.config.iterations, self.label, initial=loop.iteration, leave=False)
        with bar, interrupt:
            try:
                self._loop(loop, rng_after_loader, bar, interrupt)
            except KeyboardInterrupt:
                with interrupt.deferred():
                    self._save_interrupted(loop)
                raise
        best_path = self.paths.checkpoint_best
        use_best = self.config.eval_checkpoint == "best" and best_path.exists()
        weights = best_path if use_best else self.paths.checkpoint_last
        return TrainResult(
            loop.iteration, loop.best, time.perf_counter() - loop.start, weights, self.first_step, resumed_from
        )

    def _loop(
        self, loop: _LoopState, rng_after_loader: dict | None, bar: console.Progress, interrupt: DeferredInterrupt
    ) -> None:
        from bench.data.sampler import make_patch_loader

        c = self.config
        log_every = max(1, c.val_every // 10)
        while loop.iteration < c.iterations or loop.pending_validation:
            if not loop.pending_validation:
                segment = loop.iteration // c.val_every
                end = min((segment + 1) * c.val_every, c.iterations)
                loop.rng = (rng_state(), False)
                loader = make_patch_loader(
                    self.train_cases, tuple(c.patch), c.batch_size, seed=self.seed * 100_003 + segment,
                    augment=c.augment, workers=c.workers, rank=self.ctx.rank, world_size=self.ctx.world_size,
                    fg_fraction=c.fg_fraction, flip_axes=c.flip_axes,
                )  # fmt: skip
                if rng_after_loader is not None:
                    loop.rng = None
                    for _ in range(loop.iteration - segment * c.val_every):
                        next(loader)
                    set_rng_state(rng_after_loader)
                    rng_after_loader = None
                loop.rng = True  # from here on: the RNG state of the moment, loader made
                self.net.train()
                while loop.iteration < end:
                    batch = next(loader)
                    with interrupt.deferred():
                        lr = self._set_lr(loop.iteration)
                        loop.window.append(self.train_step(batch, loop.iteration))
                        if loop.iteration == 0:
                            self.first_step = {**dict(zip(("loss", "seg_loss", "kd_loss"), loop.window[-1])),
                                               **self._probe}  # fmt: skip
                        loop.iteration += 1
                        if loop.iteration % log_every == 0 or loop.iteration == end:
                            loop.rows.append(self._log_row(loop.iteration, loop.window, lr, loop.start))
                            bar.set_postfix(loss=f"{loop.rows[-1]['loss']:.3f}", dice=f"{loop.val_dice:.3f}")
                            loop.window = []
                        bar.update()
                del loader
                loop.pending_validation = True
            val_dice = self._validate() if self.ctx.is_main else math.nan
            with interrupt.deferred():
                loop.pending_validation = False
                if self.ctx.is_main:
                    loop.val_dice = val_dice
                    loop.rows[-1]["val_dice"] = val_dice
                    improved = not math.isnan(val_dice) and (loop.best is None or val_dice > loop.best)
                    loop.best = val_dice if improved else loop.best
                    payload = self._payload(loop, rng_state(), loader_made=False)
                    if improved:
                        save_checkpoint(self.paths.checkpoint_best, payload)
                    save_checkpoint(self.paths.checkpoint_last, payload)
                    loop.saved = loop.iteration
                    self._write_log(loop.rows)
                    bar.set_postfix(loss=f"{loop.rows[-1]['loss']:.3f}", dice=f"{val_dice:.3f}")
                    console.detail(f"{self.label}: iteration {loop.iteration}, validation Dice {val_dice:.4f}")
            self.ctx.barrier()

    def _save_interrupted(self, loop: _LoopState) -> None:
        """Write ``checkpoint_last.pt`` (and the log) at the iteration reached, unless nothing changed since the last
        checkpoint or the state is not one an uninterrupted run passes through."""
        if not self.ctx.is_main or loop.rng is None:
            return
        if loop.iteration == loop.saved and not loop.pending_validation:
            return
        rng, loader_made = (rng_state(), True) if loop.rng is True else loop.rng
        payload = self._payload(loop, rng, loader_made and not loop.pending_validation)
        save_checkpoint(self.paths.checkpoint_last, payload)
        self._write_log(loop.rows)
        last = self.paths.checkpoint_last
        console.detail(f"{self.label}: interrupted at iteration {loop.iteration}, checkpoint {last}")

    def _set_lr(self, iteration: int) -> float:
        c = self.config
        lr = SCHEDULES[c.schedule](c.lr, iteration, c.iterations)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _nan_hint(self) -> str:
        if self.device.type == "cpu" and self.amp == torch.bfloat16:
            return (
                "; on x86 CPUs oneDNN's AVX-512 bf16 convolution backward can return NaN, "
                "ONEDNN_MAX_CPU_ISA=AVX2 avoids it"
            )
        return ""

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp) if self.amp else contextlib.nullcontext()

    def train_step(self, batch: dict, iteration: int) -> tuple[float, float, float]:
        """One optimiser step on ``batch``; returns (total, supervised, KD) loss values."""
        x = batch["image"].to(self.device, non_blocking=True).contiguous(memory_format=self.mem_format)
        y = batch["label"].to(self.device, non_blocking=True)
        try:
            with self._autocast():
                out = self.net(x)
                seg = self.seg_loss(out.logits, y)
                kd_loss = torch.zeros((), device=self.device)
                if self.kd is not None:
                    with torch.no_grad():
                        teacher_out = self.teacher(x)
                    kd_loss = self.kd(out, teacher_out, self._known(y))
                loss = self.seg_weight * seg + kd_loss
        except torch.cuda.OutOfMemoryError:
            raise BenchError(
                f"CUDA out of memory training with patch {'x'.join(map(str, self.config.patch))} and batch "
                f"{self.config.batch_size}; try --set patch=[...] with smaller sides or --set batch_size=1"
            ) from None
        if iteration == 0:
            self._probe = self._first_step_probe(loss, seg)
        if not torch.isfinite(loss):
            raise BenchError(
                f"the loss became {loss.item()} at iteration {iteration + 1}; training stopped and the last good "
                f"checkpoint is kept in {self.paths.checkpoint_last} (lower lr or use amp=off{self._nan_hint()})"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.kd is not None:
            all_reduce_grads(list(self.kd.parameters()), self.ctx)
        if self.config.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.item(), seg.item(), kd_loss.item()

    def _first_step_probe(self, loss: torch.Tensor, seg: torch.Tensor) -> dict[str, float]:
        """What the first step's losses cannot show, for ``bench check``'s exact checks: the norm of the gradient that
        the KD term contributes to the student's weights as it enters the loss (0 when it is detached anywhere on its
        way), and how many parameters the optimiser updates (the student's and a KD method's adapters).

        The KD part is differentiated as ``loss - seg_weight * seg``: the supervised branch then receives exactly zero
        (``w - w``), so no cancellation error hides a small KD gradient under the supervised one.
        """
        optimised = sum(p.numel() for group in self.optimizer.param_groups for p in group["params"])
        kd_part = loss - self.seg_weight * seg
        weights = [p for p in self.model.parameters() if p.requires_grad]
        norm = 0.0
        if self.kd is not None and kd_part.requires_grad:
            grads = torch.autograd.grad(kd_part, weights, retain_graph=True, allow_unused=True)
            norm = math.sqrt(sum(float(g.detach().float().pow(2).sum()) for g in grads if g is not None))
        return {"kd_grad_norm": norm, "optimized_params": float(optimised)}

    def _known(self, target: torch.Tensor) -> torch.Tensor:
        """``target`` for the KD methods, which know no ignore label: its voxels as background."""
        return target if self.ignore_label is None else target.masked_fill(target == self.ignore_label, 0)

    def _log_row(self, iteration: int, window: list[tuple[float, float, float]], lr: float, start: float) -> dict:
        loss, seg, kd = (float(np.mean(col)) for col in zip(*window))
        return {"iteration": iteration, "loss": loss, "seg_loss": seg, "kd_loss": kd, "lr": lr,
                "val_dice": math.nan, "seconds": time.perf_counter() - start}  # fmt: skip

    def _write_log(self, rows: list[dict]) -> None:
        frame = pd.DataFrame(rows, columns=TRAIN_LOG_COLUMNS)
        atomic_write_text(self.paths.train_log, frame.to_csv(index=False))

    def _validate(self) -> float:
        """Mean over validation cases of the mean foreground Dice (sliding window on the preprocessed volume)."""
        from bench.evaluation import EvalCase, InferenceSettings, evaluate_model, mean_case_dice

        if not self.val_cases:
            return math.nan
        cases = [EvalCase(case.case_id, case) for case in self.val_cases]
        settings = InferenceSettings.from_config(self.config, self.device)
        per_case = evaluate_model(self.model, cases, settings, hd95=False)
        return mean_case_dice(per_case, [case.case_id for case in cases])
