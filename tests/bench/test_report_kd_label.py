"""The report's KD text names the variant a method ran (MS-KD's ``variant``), so rows of different formulas under
one name are told apart."""

import pytest

from bench.report.tables import kd_label


@pytest.mark.parametrize(
    ("kd", "hparams", "label"),
    [
        ("ms", {"variant": "paper", "norm": "voxel_floor"}, "ms:variant=paper"),
        ("ms:weight=0.5", {"variant": "pymic"}, "ms:variant=pymic:weight=0.5"),
        ("ms:variant=nnunet", {"variant": "nnunet"}, "ms:variant=nnunet"),
        ("ca+ms", {"ca": {"weight": 0.02}, "ms": {"variant": "paper"}}, "ca+ms:variant=paper"),
        ("ca:weight=0.1+ms", {"ca": {"weight": 0.1}, "ms": {"variant": "sample"}}, "ca:weight=0.1+ms:variant=sample"),
        ("ms", {"norm": "sample"}, "ms"),  # a record written before variants existed keeps its text
        ("ca", {"weight": 0.02}, "ca"),
        ("none", None, "none"),
        (None, None, None),
    ],
)
def test_kd_label_adds_the_recorded_variant_unless_the_text_sets_it(kd, hparams, label):
    assert kd_label(kd, hparams) == label
