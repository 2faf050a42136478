"""Golden loss values on one fixed seeded input (torchdistill style).

A failure means a loss changed value. If the change is intended, regenerate the fixture with
``python tests/kd_methods/make_golden.py`` and say why in the commit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.kd_methods.kd_loss_cases import GOLDEN_CONFIGS, golden_losses

GOLDEN = json.loads((Path(__file__).parent / "golden_losses.json").read_text())["losses"]


def test_golden_fixture_covers_every_configured_case():
    assert set(GOLDEN) == set(GOLDEN_CONFIGS)


@pytest.fixture(scope="module")
def computed() -> dict[str, float]:
    return golden_losses()


@pytest.mark.parametrize("key", sorted(GOLDEN_CONFIGS))
def test_loss_matches_its_golden_value(key, computed):
    assert computed[key] == pytest.approx(GOLDEN[key], rel=1e-5)
