"""The evaluation stage: a trained network scored on the test split, in each CT's original geometry."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from torch import nn

from bench.evaluation import EvalCase, InferenceSettings, evaluate_model
from bench.pipeline.inputs import PreparedData
from bench.training.config import RunConfig


def evaluate_test(model: nn.Module, data: PreparedData, test: list, config: RunConfig, device: torch.device, *,
                  workers: int = 0, predictions: Path | None = None) -> pd.DataFrame:  # fmt: skip
    """Per-case, per-organ Dice and HD95 of ``model`` on the ``test`` cases with the inference settings of
    ``config``; ``predictions``: a folder for the masks as NIfTI (None: not written)."""
    cases = [EvalCase(case.case_id, data.prepared[case.case_id], case.label, case.label_parts) for case in test]
    settings = InferenceSettings.from_config(config, device)
    return evaluate_model(model, cases, settings, data.labels, workers=workers, predictions=predictions,
                          progress=True)  # fmt: skip
