"""What ``bench run`` was asked to do: the grid's axes and settings, as plain data (no torch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.training.config import RunConfig


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
