"""Regenerate ``golden_losses.json``: ``python tests/kd_methods/make_golden.py``.

Run it only after an intended change to a loss, and say why in the commit: the fixture pins every KD method's value
on one fixed seeded input in float64 (torchdistill-style golden losses; see test_kd_golden for the tolerance).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.kd_methods.kd_loss_cases import golden_losses

GOLDEN_PATH = Path(__file__).resolve().parent / "golden_losses.json"


def main() -> None:
    torch.set_num_threads(1)
    payload = {"torch": torch.__version__, "losses": golden_losses()}
    fd, tmp = tempfile.mkstemp(dir=GOLDEN_PATH.parent, suffix=".json.tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(payload, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, GOLDEN_PATH)
    for key, value in payload["losses"].items():
        print(f"{key:28s} {value:.9g}")
    print(f"wrote {GOLDEN_PATH}")


if __name__ == "__main__":
    main()
