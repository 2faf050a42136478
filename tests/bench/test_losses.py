"""Supervised loss values on hand-made tensors."""

import math

import pytest
import torch

from bench.training.losses import (
    MultiScaleSegLoss,
    SoftDiceCELoss,
    deep_supervision_weights,
    downsample_target,
    soft_dice_loss,
)


def _confident_logits(labels: torch.Tensor, classes: int, margin: float = 50.0) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels, classes).movedim(-1, 1).float() * margin


def test_soft_dice_is_zero_for_a_perfect_confident_prediction():
    labels = torch.zeros(1, 4, 4, 4, dtype=torch.long)
    labels[0, :2] = 1
    labels[0, 2:, :2] = 2
    assert soft_dice_loss(_confident_logits(labels, 3), labels).item() == pytest.approx(0.0, abs=1e-6)


def test_soft_dice_of_half_overlap_is_one_half_per_class():
    # class 1 occupies the first half in the target, the first quarter plus the last quarter in the prediction
    target = torch.zeros(1, 4, 1, 1, dtype=torch.long)
    target[0, :2] = 1
    pred = torch.zeros(1, 4, 1, 1, dtype=torch.long)
    pred[0, 0] = 1
    pred[0, 3] = 1
    loss = soft_dice_loss(_confident_logits(pred, 2), target)
    assert loss.item() == pytest.approx(1 - 2 * 1 / (2 + 2), abs=1e-5)


def test_dice_ce_on_uniform_logits_is_dice_plus_log_k():
    target = torch.tensor([[[[0, 1], [2, 1]]]])  # [B=1, 1, 2, 2]
    logits = torch.zeros(1, 3, 1, 2, 2)
    probs_dice = []
    for k in (1, 2):
        n = (target == k).sum().item()
        probs_dice.append((2 * n / 3 + 1e-5) / (4 / 3 + n + 1e-5))
    expected = (1 - sum(probs_dice) / 2) + math.log(3)
    assert SoftDiceCELoss()(logits, target).item() == pytest.approx(expected, rel=1e-5)


def test_deep_supervision_weights_halve_and_sum_to_one():
    w = deep_supervision_weights(4)
    assert w == pytest.approx([8 / 15, 4 / 15, 2 / 15, 1 / 15])


def test_target_is_downsampled_by_nearest_neighbour():
    target = torch.arange(8).reshape(1, 2, 2, 2) % 3
    small = downsample_target(target, (1, 1, 1))
    assert small.dtype == torch.long and small.item() == target[0, 0, 0, 0].item()


def test_deep_supervision_loss_weights_each_scale():
    target = torch.randint(0, 3, (2, 8, 8, 8))
    logits = [torch.randn(2, 3, 8, 8, 8), torch.randn(2, 3, 4, 4, 4)]
    base = SoftDiceCELoss()
    expected = 2 / 3 * base(logits[0], target) + 1 / 3 * base(logits[1], downsample_target(target, (4, 4, 4)))
    assert MultiScaleSegLoss()(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)
