"""Synthetic abdominal CT data sets in the nnU-Net v2 raw layout, and the default set that ``bench run`` uses.

Each case is drawn from ``numpy.random.default_rng([seed, case_index])``, so a case depends only on the seed, its
index and the grid size: the same seed gives identical arrays, and a smaller set is a prefix of a larger one.
Training cases are ``case_0000`` .. and test cases continue the numbering.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench import console
from bench.atomic import writable_folder
from bench.data.defaults import (
    DATA_DIR_ENV,
    DEFAULT_CASES,
    DEFAULT_SEED,
    DEFAULT_SIZE,
    DEFAULT_SPACING,
    SYNTH_VERSION,
)
from bench.data.files import remove_stale, write_json
from bench.data.nifti import make_image, write_image
from bench.data.phantom import ORGANS, make_case
from bench.errors import BenchError

MIN_SIZE = 8


def default_test_cases(cases: int) -> int:
    """Test cases that go with ``cases`` training cases when none are asked for: 6 for 16, 1 for 3."""
    return round(cases * 3 / 8)


def default_data_dir() -> Path:
    """Where the default synthetic set lives: ``$SEGKD_DATA_DIR`` or ``~/.cache/segkd-bench/synthetic-v1``."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "segkd-bench" / SYNTH_VERSION


def synth_case(seed: int, index: int, size: Sequence[int] = DEFAULT_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Case ``index`` of the set drawn with ``seed``: (HU image int16 [D, H, W], labels uint8 [D, H, W])."""
    return make_case(np.random.default_rng([seed, index]), tuple(size))


def generate_dataset(
    out: Path,
    cases: int = DEFAULT_CASES,
    test_cases: int | None = None,
    seed: int = DEFAULT_SEED,
    size: Sequence[int] = DEFAULT_SIZE,
    spacing: Sequence[float] = DEFAULT_SPACING,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write a synthetic set to ``out`` (nnU-Net v2 raw layout, ``.nii.gz``) and return ``out``.

    The set is built in a temporary sibling folder and renamed into place, so ``out`` is either complete or absent.
    ``spacing`` and ``size`` are in array order (z, y, x). An existing non-empty ``out`` is an error unless
    ``overwrite``.
    """
    out = Path(out).expanduser().absolute()
    test_cases = default_test_cases(cases) if test_cases is None else test_cases
    _validate(out, cases, test_cases, size, spacing, overwrite)
    writable_folder(out.parent, "cannot write the data set into")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        _write_cases(tmp, cases, test_cases, seed, tuple(size), tuple(spacing), progress)
        _move_into_place(tmp, out, overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def ensure_default_dataset() -> Path:
    """The default synthetic set (16 training + 6 test cases, 48x128x128 voxels); generated on first use.

    Lives in :func:`default_data_dir`. Concurrent first calls each generate into their own temporary folder; the first
    rename wins and the others use its result.
    """
    root = default_data_dir()
    if (root / "dataset.json").is_file():
        return root
    remove_stale(root.parent, f".{root.name}.tmp-*")
    console.note(f"bench: generating the default synthetic data set into {root} (once)")
    try:
        return generate_dataset(root)
    except BenchError:
        if (root / "dataset.json").is_file():  # another process finished first
            return root
        raise


def dataset_json(cases: int, test_cases: int, seed: int, size: Sequence[int], spacing: Sequence[float]) -> dict:
    """The nnU-Net v2 ``dataset.json`` of a synthetic set, with the generator settings under ``synthetic``."""
    return {
        "name": "SegKDSynthAbdomen",
        "description": "segkd-bench procedural abdominal CT (HU, portal-venous phase), not real patients",
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, **{name: value for value, name in ORGANS.items()}},
        "numTraining": cases,
        "numTest": test_cases,
        "file_ending": ".nii.gz",
        "synthetic": {
            "version": SYNTH_VERSION,
            "seed": seed,
            "size_zyx": list(size),
            "spacing_zyx": list(spacing),
        },
    }


def _validate(
    out: Path, cases: int, test_cases: int, size: Sequence[int], spacing: Sequence[float], overwrite: bool
) -> None:
    if cases < 1:
        raise BenchError(f"--cases must be at least 1, got {cases}")
    if test_cases < 0:
        raise BenchError(f"--test-cases must be 0 or more, got {test_cases}")
    if len(size) != 3 or min(size) < MIN_SIZE:
        raise BenchError(f"--size needs three sizes of at least {MIN_SIZE} voxels (z,y,x), got {list(size)}")
    if len(spacing) != 3 or min(spacing) <= 0:
        raise BenchError(f"--spacing needs three positive spacings in mm (z,y,x), got {list(spacing)}")
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise BenchError(f"--out {out} exists and is not empty; pick another folder or pass --force")


def _write_cases(
    root: Path, cases: int, test_cases: int, seed: int, size: tuple, spacing: tuple, progress: bool
) -> None:
    origin = tuple(-0.5 * (n - 1) * s for n, s in zip(reversed(size), reversed(spacing)))
    with console.Progress(cases + test_cases, "synthetic cases", "cases", enabled=progress) as bar:
        for index in bar.track(range(cases + test_cases)):
            image, label = synth_case(seed, index, size)
            images, labels = ("imagesTr", "labelsTr") if index < cases else ("imagesTs", "labelsTs")
            case_id = f"case_{index:04d}"
            write_image(make_image(image, spacing, origin), root / images / f"{case_id}_0000.nii.gz")
            write_image(make_image(label, spacing, origin), root / labels / f"{case_id}.nii.gz")
    write_json(root / "dataset.json", dataset_json(cases, test_cases, seed, size, spacing))


def _move_into_place(tmp: Path, out: Path, overwrite: bool) -> None:
    if out.exists() and overwrite:
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
        return
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    try:
        os.rename(tmp, out)
    except OSError:
        raise BenchError(f"{out} appeared while the synthetic set was being generated; not overwriting it") from None
