import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import models
from models import SegOutput


def test_available_models_lists_core_networks_and_filters_by_wildcard():
    names = models.available_models()
    assert {"lcovnet", "unet3d", "nnunet"} <= set(names)
    assert names == sorted(names)
    assert models.available_models("lcov*") == ["lcovnet"]
    assert models.available_models("no-such-*") == []


def test_unknown_model_error_lists_registered_names():
    with pytest.raises(models.UnknownModelError) as err:
        models.create_model("lcovnett")
    assert "lcovnett" in str(err.value)
    assert "lcovnet" in str(err.value).split("registered models:")[1]


def test_registering_a_name_twice_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        models.register_model("lcovnet", description="x", reference="x", default_patch=(32, 32, 32), stride=16)(
            lambda **kw: None
        )


def test_model_info_carries_metadata():
    info = models.model_info("lcovnet")
    assert info.default_patch == (64, 128, 128)
    assert info.stride == (16, 16, 16)
    assert "TMI" in info.reference
    assert models.model_info("nnunet").stride == (16, 32, 32)


def test_create_model_rejects_too_few_classes():
    with pytest.raises(ValueError, match="num_classes"):
        models.create_model("lcovnet", num_classes=1)


def test_seg_output_requires_matching_lengths():
    with pytest.raises(ValueError):
        SegOutput([torch.zeros(1)], [torch.zeros(1), torch.zeros(1)])
    with pytest.raises(ValueError):
        SegOutput([])


def _install_plugins(site: Path) -> None:
    """A working and a broken plugin package, each declaring an entry point as an installed distribution would."""
    (site / "good_plugin.py").write_text(
        "import models\n"
        "models.register_model('plugin-net', description='from a plugin', reference='test', "
        "default_patch=(32, 32, 32), stride=16)(lambda **kw: None)\n"
    )
    (site / "broken_plugin.py").write_text("import no_such_dependency_of_a_plugin\n")
    for dist, module in (("good_plugin", "good_plugin"), ("broken_plugin", "broken_plugin")):
        info = site / f"{dist}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[segkd_bench.models]\n{dist} = {module}\n")


def test_broken_model_plugin_is_reported_and_the_others_still_load(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    _install_plugins(site)
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(repo)])}
    proc = subprocess.run([sys.executable, "-m", "bench", "list", "--pattern", "*-net"], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "plugin-net" in proc.stdout
    assert "broken_plugin" in proc.stderr and "no_such_dependency_of_a_plugin" in proc.stderr
    assert "Traceback" not in proc.stderr
