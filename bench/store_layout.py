"""The layout of a results store: the one place that spells the names of its files and folders.

Layout under ``ROOT`` (``--results DIR``, ``results/`` by default)::

    ROOT/bench.sqlite                       index of complete runs (bench.store)
    ROOT/runs/<run_id>/                     one folder per run (RunPaths)
        .lock                               who owns the run now (bench.runlock)
        config.json, env.json               what the run was asked to do, and where it ran
        preprocessing.json                  how to segment a new CT with the run (bench.deploy.spec)
        train_log.csv, checkpoint_{last,best}.pt   training (bench.training.trainer)
        weights.pt                          the evaluated weights
        predictions/<case>.nii.gz           with --save-predictions
        per_case.csv                        per-case, per-organ metrics
        summary.json                        written last: a run is complete iff this file exists (bench.run_summary)
        export.json, export/                what `bench export` measured, and its files
        export.openvino.json                what `bench export --format openvino` measured
    ROOT/jobs/<run_id>/                     what the executors record about a cell (JobPaths)
        job.json, error.txt, log.txt        submission, the last failure, the worker's output
    ROOT/splits/<data set>.json             the cross-validation folds of a data set
    ROOT/cache/                             preprocessed cases (bench.data.preprocess owns what is inside)
    ROOT/experiments/<name>.toml            resolved experiment files
    ROOT/report/                            `bench report`'s default output

Run ids, data set and experiment names become folder or file names here, so each is checked to be one path
component (:func:`bench.path_names.path_component`) before a path is made from it. Nothing below ROOT is written
through a symbolic link (:func:`bench.atomic.protect`): a linked ``report/``, run folder or ``.lock`` could
otherwise make a command write or empty a file outside the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.atomic import protect
from bench.path_names import path_component


@dataclass(frozen=True)
class RunPaths:
    """The files of one run folder, ``ROOT/runs/<run_id>``."""

    dir: Path

    @property
    def run_id(self) -> str:
        return self.dir.name

    @property
    def lock(self) -> Path:
        return self.dir / ".lock"

    @property
    def config(self) -> Path:
        return self.dir / "config.json"

    @property
    def env(self) -> Path:
        return self.dir / "env.json"

    @property
    def spec(self) -> Path:
        """The deployment spec (``bench predict``, ``bench export``)."""
        return self.dir / "preprocessing.json"

    @property
    def train_log(self) -> Path:
        return self.dir / "train_log.csv"

    @property
    def checkpoint_last(self) -> Path:
        return self.dir / "checkpoint_last.pt"

    @property
    def checkpoint_best(self) -> Path:
        return self.dir / "checkpoint_best.pt"

    @property
    def weights(self) -> Path:
        return self.dir / "weights.pt"

    @property
    def predictions(self) -> Path:
        return self.dir / "predictions"

    @property
    def per_case(self) -> Path:
        return self.dir / "per_case.csv"

    @property
    def summary(self) -> Path:
        return self.dir / "summary.json"

    @property
    def export_record(self) -> Path:
        return self.dir / "export.json"

    def export_record_of(self, fmt: str) -> Path:
        """What ``bench export --format FMT`` measured: ``export.json`` for ONNX, ``export.FMT.json`` otherwise."""
        return self.export_record if fmt == "onnx" else self.dir / f"export.{fmt}.json"

    def export_records(self) -> list[Path]:
        """Every export record of the run that exists, ONNX's first."""
        return [self.export_record, *sorted(self.dir.glob("export.*.json"))]

    @property
    def export_dir(self) -> Path:
        """Where ``bench export`` writes its files unless told otherwise."""
        return self.dir / "export"

    def training_outputs(self) -> tuple[Path, ...]:
        """The files a training writes, up to the summary: what ``--force`` and ``--restart`` discard (with
        ``predictions``). The run's config, environment and spec are rewritten by the new run."""
        return (self.checkpoint_last, self.checkpoint_best, self.weights, self.train_log, self.summary)


@dataclass(frozen=True)
class JobPaths:
    """What an executor records about one cell, ``ROOT/jobs/<run_id>`` (bench.executors.jobs)."""

    dir: Path

    @property
    def record(self) -> Path:
        """Executor, job id, submission time (written by the dispatching ``bench run``)."""
        return self.dir / "job.json"

    @property
    def error(self) -> Path:
        """The error of the cell's last failed attempt (written by the worker, removed on a retry)."""
        return self.dir / "error.txt"

    @property
    def log(self) -> Path:
        """The worker's output (``--executor local``); SLURM jobs leave submitit's ``*_log.{out,err}`` here."""
        return self.dir / "log.txt"


class ResultsLayout:
    """Every path of a results store under ``root`` (see the module docstring); nothing is created here, and from
    here on this process writes nothing below ``root`` through a link."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        protect(self.root)

    @property
    def index(self) -> Path:
        return self.root / "bench.sqlite"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def jobs(self) -> Path:
        return self.root / "jobs"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def report(self) -> Path:
        return self.root / "report"

    def run(self, run_id: str) -> RunPaths:
        return RunPaths(self.runs / path_component(run_id, "run id"))

    def job(self, run_id: str) -> JobPaths:
        return JobPaths(self.jobs / path_component(run_id, "run id"))

    def splits(self, dataset: str) -> Path:
        return self.root / "splits" / f"{path_component(dataset, 'data set name')}.json"

    def experiment(self, name: str) -> Path:
        return self.root / "experiments" / f"{path_component(name, 'experiment name')}.toml"

    def run_ids(self) -> list[str]:
        """Every run folder's id, complete or not."""
        return sorted(p.name for p in self.runs.glob("*") if p.is_dir())

    def job_ids(self) -> list[str]:
        """Every cell an executor has a record folder for."""
        return sorted(p.name for p in self.jobs.glob("*") if p.is_dir())

    def complete_run_ids(self) -> list[str]:
        """The ids of the runs whose summary is written (complete ones)."""
        return sorted(p.name for p in self.runs.glob("*") if RunPaths(p).summary.is_file())
