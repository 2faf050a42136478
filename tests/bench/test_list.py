"""`bench list`: one model's or KD method's arguments, and a reader that stops early."""

import subprocess

import pytest

from bench.components.factory_args import arguments
from tests.bench.runutil import bench_cmd


def test_list_kd_shows_each_argument_with_default_paper_value_and_meaning():
    proc = subprocess.run(bench_cmd("list", "--kd", "ms"), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("ms: Multi-Scale KD")
    (tau,) = [line for line in lines if line.startswith("tau_fn")]
    assert tau.split()[:4] == ["tau_fn", "None", "2", "(FNKD)"]
    assert "temperature multiplying the normalised logits" in tau
    assert any(line.startswith("scale_weights  [0.4,0.2,0.2,0.2]") for line in lines)
    assert lines[-1] == "set with: --kd ms:variant=paper"
    (variant,) = [line for line in lines if line.startswith("variant")]
    assert variant.split()[:3] == ["variant", "paper", "paper"] and "whose formula" in variant


def test_list_model_shows_its_factory_arguments_without_the_dataset_ones():
    proc = subprocess.run(bench_cmd("list", "--model", "lcovnet"), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    names = [line.split()[0] for line in proc.stdout.splitlines() if line[:1].isalpha() and "  " in line]
    assert names[1:] == ["channels", "base_channels", "dropout", "deep_supervision"]  # [0]: the header


def test_list_of_an_unknown_method_is_a_one_line_input_error():
    proc = subprocess.run(bench_cmd("list", "--kd", "cakd"), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "bench list: error: --kd: unknown KD method 'cakd'; registered methods: acf, at, ca, cirkd, cwd, dist, dkd, "
        "emkd, fitnet, ft, ifvd, kd, ms, nkd, reviewkd, skd"
    ]


@pytest.mark.parametrize("args", [("list",), ("list", "--kd", "ca")])
def test_a_reader_that_closes_the_pipe_early_gets_no_traceback(args):
    proc = subprocess.Popen(bench_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # `| head -0`: every write of bench meets a closed pipe
    _, stderr = proc.communicate(timeout=600)
    assert stderr.decode() == ""
    assert proc.returncode == 141


def test_every_argument_of_every_registered_entry_is_documented():
    import kd_methods
    import models

    entries = [("model", n) for n in models.available_models()] + [("kd", n) for n in kd_methods.available_kd_methods()]
    missing = [f"{name}.{a.name}" for kind, name in entries for a in arguments(kind, name) if not a.help]
    assert missing == []
