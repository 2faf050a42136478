"""What the cells of one grid share in a process: the spec, the device, the DDP rank, the results store and the
profiles measured so far."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from bench.device import resolve_device
from bench.grid.plan import Cell
from bench.grid.spec import GridSpec
from bench.pipeline.inputs import FoldInputs, load_checked_dataset, prepare_fold
from bench.store import ResultsStore
from bench.training.config import RunConfig
from bench.training.distributed import DistContext


@dataclass
class GridContext:
    """``worker``: a process that runs cells dispatched by another one, which has already checked the names and the
    data set; it writes run directories only and leaves the SQLite index to readers (see ``bench.store``)."""

    spec: GridSpec
    device: torch.device
    dist: DistContext = field(default_factory=DistContext)
    worker: bool = False
    profiles: dict[str, dict] = field(default_factory=dict)  # profile records by network, arguments and protocol
    _store: ResultsStore | None = None

    @classmethod
    def open(cls, spec: GridSpec, dist: DistContext | None = None, *, worker: bool = False) -> GridContext:
        """The context of ``spec`` in this process: its device (rank ``local_rank``'s GPU under DDP)."""
        dist = dist or DistContext()
        device = resolve_device(spec.device)
        if dist.enabled and device.type == "cuda":
            device = torch.device("cuda", dist.local_rank)
        return cls(spec, device, dist, worker)

    @property
    def store(self) -> ResultsStore:
        """Created on first use, after the arguments and the dataset passed their checks: a run that fails
        validation leaves no ``bench.sqlite`` or ``runs/`` behind."""
        if self._store is None:
            self._store = ResultsStore(self.spec.results, index=not self.worker)
        return self._store

    def config_for(self, cell: Cell) -> RunConfig:
        """The protocol ``cell`` trains with: a teacher's own, or the students'."""
        return self.spec.own_teacher_config if cell.own_protocol else self.spec.config

    def preset_label(self, cell: Cell) -> str:
        """The preset name a run is reported under; a teacher trained with its own protocol is reported apart from
        the same model trained as a student (``smoke-teacher``)."""
        return f"{self.spec.preset}-teacher" if cell.own_protocol else self.spec.preset

    def fold_inputs(self, folds: list[int] | None = None) -> dict[int, FoldInputs]:
        """The prepared data and splits of ``folds`` (default: the grid's), every case preprocessed (and cached)
        before the first cell runs. The dispatching process checks the data set first; a worker trusts that check."""
        spec = self.spec
        dataset = load_checked_dataset(
            spec.data, spec.labels, spec.modality, check=not self.worker, warn=self.dist.is_main
        )
        root = self.store.root
        thorough = spec.force and not self.worker  # --force: the dispatching process checks every cached array
        return {fold: prepare_fold(dataset, spec.config, fold, root, progress=not self.worker, thorough=thorough)
                for fold in folds or spec.folds}  # fmt: skip

    def prepare(self) -> tuple[dict[int, FoldInputs], list[Cell]]:
        """Every fold's inputs (:meth:`fold_inputs`) and the plan; ``--teacher-checkpoint`` checked against the
        teacher before any cell trains."""
        from bench.grid.plan import plan_cells
        from bench.pipeline.teacher import check_teacher_checkpoint

        inputs = self.fold_inputs()
        first = inputs[self.spec.folds[0]].data
        check_teacher_checkpoint(self, first)
        return inputs, plan_cells(self.spec, first.name)

    def complete(self, cells: list[Cell]) -> set[str]:
        """The run ids of ``cells`` that are complete in the store and will be skipped (none with ``force``)."""
        return set() if self.spec.force else {c.run_id for c in cells if self.store.is_complete(c.run_id)}
