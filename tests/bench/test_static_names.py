"""The torch-free view of the registries (``bench.components.static_names``) names exactly what the registries hold."""

import subprocess
import sys

import kd_methods
import models
from bench.components import static_names
from tests.bench.runutil import bench_cmd


def test_static_model_names_and_strides_match_the_registry():
    strides = static_names.model_strides()
    assert strides is not None
    assert sorted(strides) == models.available_models()
    for name, stride in strides.items():
        assert stride is None or stride == models.model_info(name).stride, name


def test_static_kd_method_names_match_the_registry():
    assert sorted(static_names.kd_method_names()) == kd_methods.available_kd_methods()


def test_reading_the_names_imports_no_torch():
    code = (
        "import sys; from bench.components import static_names as r; r.model_strides(); r.kd_method_names(); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_bench_list_lines_stay_within_100_characters():
    # The CLI writes UTF-8 (a model's description names Çiçek); decoding it must not depend on the locale this test
    # process has at the time (one full-suite worker decoded it as ASCII and failed).
    out = subprocess.run(bench_cmd("list"), capture_output=True, encoding="utf-8", check=True).stdout
    assert max(len(line) for line in out.splitlines()) <= 100
    names = {line.split()[0] for line in out.splitlines() if line and not line.startswith((" ", "-"))}
    assert set(models.available_models()) <= names and set(kd_methods.available_kd_methods()) <= names
