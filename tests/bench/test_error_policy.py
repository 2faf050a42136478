"""The one error policy: library error types become one line and a documented exit code in bench/cli.py only."""

import errno

import kd_methods
import models
from bench.cli import user_error
from bench.errors import EXIT_DISK_FULL, EXIT_INPUT, DataError


def test_model_and_kd_layer_errors_are_input_errors():
    for err in (models.ModelError("bad width"), kd_methods.KDMethodError("tau must be positive"),
                models.UnknownModelError("unknown model 'x'"), DataError("a.nii.gz: truncated")):  # fmt: skip
        known = user_error(err)
        assert known is not None and known.exit_code == EXIT_INPUT and str(known) == str(err)


def test_full_disk_names_the_path_and_its_free_space(tmp_path):
    known = user_error(OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.pt")))
    assert known.exit_code == EXIT_DISK_FULL
    assert str(tmp_path / "x.pt") in str(known) and "MiB free" in str(known)


def test_anything_else_is_a_bug_and_keeps_its_traceback():
    assert user_error(ValueError("internal")) is None
    assert user_error(OSError(errno.EACCES, "Permission denied")) is None
