"""Train / validation / test splits, written to a ``splits.json`` so reruns use exactly the same cases.

The test split is the data set's own labelled test split when it has one; otherwise a seeded k-fold partition of the
training pool holds one fold out. Validation is the data set's own validation split (WORD's ``imagesVal``) or a small
seeded slice of what is left for training, different for each fold, empty for tiny sets.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench.data.files import write_json
from bench.data.layouts import Case, Dataset
from bench.errors import BenchError

DEFAULT_FOLDS = 5
VAL_FRACTION = 0.1
MIN_POOL_FOR_VAL = 5


def split_cases(
    dataset: Dataset,
    fold: int,
    seed: int,
    splits_file: Path,
    n_folds: int = DEFAULT_FOLDS,
) -> tuple[list[Case], list[Case], list[Case]]:
    """(train, val, test) for ``fold``; reads ``splits_file`` when it exists, else computes all folds and writes it.

    ``seed`` is the split seed: keep it fixed across training seeds so that paired comparisons see the same cases.
    """
    splits_file = Path(splits_file)
    by_id = {c.case_id: c for c in dataset.all_cases()}
    if splits_file.is_file():
        splits = _read(splits_file, dataset, seed, by_id)
        wanted = make_splits(dataset, seed, n_folds)["n_folds"]
        if splits.get("n_folds") != wanted:
            raise BenchError(
                f"splits file {splits_file} holds {splits.get('n_folds')} folds but the preset asks for {n_folds} "
                f"(folds={n_folds}); set folds={splits.get('n_folds')} or delete the file to re-split"
            )
    else:
        splits = make_splits(dataset, seed, n_folds)
        write_json(splits_file, splits)
    folds = splits["folds"]
    if not 0 <= fold < len(folds):
        raise BenchError(f"--folds must be between 0 and {len(folds) - 1} for {dataset.name}, got {fold}")
    chosen = folds[fold]
    return tuple([by_id[i] for i in chosen[part]] for part in ("train", "val", "test"))


def make_splits(dataset: Dataset, seed: int, n_folds: int = DEFAULT_FOLDS) -> dict:
    """All folds of ``dataset`` as the JSON-ready dict that :func:`split_cases` writes."""
    pool = sorted(c.case_id for c in dataset.cases if c.label is not None)
    own_test = sorted(c.case_id for c in dataset.test_cases if c.label is not None)
    own_val = sorted(c.case_id for c in dataset.val_cases if c.label is not None)
    if n_folds < 1:
        raise BenchError(f"the number of folds must be at least 1, got {n_folds}")
    if not own_test and len(pool) < 2:
        raise BenchError(f"{dataset.root}: needs at least 2 labelled training cases to hold a test fold out")
    if not pool:
        raise BenchError(f"{dataset.root}: no labelled training cases")
    rng = np.random.default_rng(seed)
    folds = []
    if own_test:
        k = n_folds
        chunks = [[] for _ in range(k)]
    else:
        k = min(n_folds, len(pool))
        chunks = [sorted(c.tolist()) for c in np.array_split(rng.permutation(pool), k)]
    for fold in range(k):
        test = own_test or chunks[fold]
        rest = [c for c in pool if c not in test]
        val = own_val or _val_slice(rest, np.random.default_rng([seed, fold]))
        train = [c for c in rest if c not in val]
        folds.append({"train": train, "val": val, "test": test})
    return {
        "dataset": dataset.name,
        "seed": seed,
        "n_folds": k,
        "test_source": "dataset" if own_test else "fold",
        "val_source": "dataset" if own_val else "slice",
        "folds": folds,
    }


def _val_slice(pool: list[str], rng: np.random.Generator) -> list[str]:
    if len(pool) < MIN_POOL_FOR_VAL:
        return []
    n = max(1, round(VAL_FRACTION * len(pool)))
    return sorted(rng.permutation(pool)[:n].tolist())


def _read(path: Path, dataset: Dataset, seed: int, by_id: dict[str, Case]) -> dict:
    try:
        splits = json.loads(path.read_text())
        folds = splits["folds"]
        named = {i for f in folds for part in ("train", "val", "test") for i in f[part]}
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as err:
        raise BenchError(f"splits file {path} is not a valid splits.json ({err}); delete it to re-split") from None
    if splits.get("seed") != seed:
        raise BenchError(
            f"splits file {path} was written with split seed {splits.get('seed')}, not {seed}; "
            "pass the same seed or delete the file to re-split"
        )
    unknown = sorted(named - set(by_id))
    if unknown:
        raise BenchError(
            f"splits file {path} names cases that {dataset.root} does not have ({', '.join(unknown[:5])}"
            f"{', ...' if len(unknown) > 5 else ''}); delete it to re-split"
        )
    expected = make_splits(dataset, seed, splits.get("n_folds", DEFAULT_FOLDS))
    if {i for f in expected["folds"] for p in ("train", "val", "test") for i in f[p]} != named:
        raise BenchError(f"splits file {path} does not cover the cases of {dataset.root}; delete it to re-split")
    return splits
