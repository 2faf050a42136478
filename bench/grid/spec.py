"""What ``bench run`` was asked to do: the grid's axes and settings, as plain data (no torch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import BenchError
from bench.training.config import RunConfig

# The most cells (training runs) one command plans: each trains a network (minutes on the smoke preset, hours to days
# on the paper's), so 10,000 is years of compute already; `--dry-run` of 9,100 cells took 10 s on two CPU cores.
MAX_CELLS = 10_000


def check_grid_size(models: int, kds: int, teachers: int, seeds: int, folds: int, trains_teachers: bool) -> int:
    """The number of cells of a grid at most (``kds`` counts the KD methods other than none; runs that two axes
    share are planned once, so there may be fewer), or a BenchError when it exceeds :data:`MAX_CELLS`. Counted, never
    enumerated, so that a grid of 10^6 cells is refused at once."""
    per_seed = (teachers if trains_teachers and kds else 0) + models * (1 + kds * teachers)
    count = per_seed * seeds * folds
    if count > MAX_CELLS:
        raise BenchError(
            f"the grid has {count:,} cells (runs): {models} model(s), {kds} KD method(s) besides none, {teachers} "
            f"teacher(s), {seeds} seed(s), {folds} fold(s); at most {MAX_CELLS:,} in one command (each cell trains a "
            "network); narrow the sweeps or split the grid"
        )
    return count


@dataclass
class GridSpec:
    """The models, KD methods, teachers, seeds and folds of a grid, with the protocol and where it writes."""

    models: list[str]
    kds: list[str]
    config: RunConfig
    preset: str
    seeds: list[int] = field(default_factory=lambda: [0])
    data: Path | None = None
    labels: Path | None = None
    modality: str = "ct"  # the cases of a set that mixes CT and MRI (AMOS22): ct, mri or all
    folds: list[int] = field(default_factory=lambda: [0])  # cross-validation folds, an axis of the grid
    teachers: list[str] = field(default_factory=list)  # empty: the preset's teacher key
    teacher_config: RunConfig | None = None  # the teachers' own protocol; None: the students'
    teacher_checkpoint: Path | None = None
    device: str = "auto"
    results: Path = Path("results")
    force: bool = False
    restart: bool = False
    save_predictions: bool = False
    eval_workers: int = 0
    whole_volume: tuple[int, int, int] | None = (160, 256, 256)  # whole-CT time per model; None skips it

    @property
    def teacher_names(self) -> list[str]:
        """The teachers of the KD cells: ``--teacher``, else the preset's ``teacher`` key."""
        return self.teachers or [self.config.teacher]

    @property
    def own_teacher_config(self) -> RunConfig:
        """The protocol the teachers train with: their own, else the students'."""
        return self.teacher_config or self.config

    @property
    def distils(self) -> bool:
        return any(kd != "none" for kd in self.kds)
