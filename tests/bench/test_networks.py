"""``bench.networks``: building a network by name, loading weights files of every format into it, checking patches."""

import subprocess
from dataclasses import asdict

import numpy as np
import pytest
import SimpleITK as sitk
import torch

import models
from bench.components import static_names
from bench.data.preprocess import PreprocessSettings
from bench.deploy.spec import DeploySpec
from bench.errors import BenchError
from bench.networks import check_patch, load_model, note_format
from bench.training.checkpoint import save_checkpoint
from tests.bench.official_nets import official_lcovnet, official_unet, randomize_batch_norms
from tests.bench.planted import tiny_run_args
from tests.bench.runutil import bench_cmd

WIDTHS = [4, 6, 8, 10, 12]  # all different, so that a tensor loaded at the wrong level has the wrong shape
OFFICIAL = {"lcovnet": (official_lcovnet, "official LCOV-Net state dict"),
            "unet3d": (official_unet, "official U-Net (UNet_KD) state dict")}  # fmt: skip


def _official(name: str, in_channels: int = 1, classes: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    return randomize_batch_norms(OFFICIAL[name][0](in_channels, WIDTHS, classes)).eval()


def _checkpoint(state: dict, kind: str) -> object:
    """``state`` as the official code's training writes it: bare, or in a PyMIC or an nnU-Net v1 checkpoint, both of
    which hold numpy numbers next to the weights."""
    if kind == "pymic":
        return {"iteration": 1500, "valid_pred": np.float32(0.83), "model_state_dict": state,
                "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 1e-3}]}}  # fmt: skip
    if kind == "nnunet":
        losses = [np.float64(0.5), np.float64(0.4)]
        return {"epoch": 2, "state_dict": state, "plot_stuff": (losses, losses, losses, losses),
                "best_stuff": (1, np.float64(0.4), np.float64(0.8), np.float64(0.8))}  # fmt: skip
    return state


@pytest.mark.parametrize(("kind", "under"), [("bare", ""), ("pymic", " (under 'model_state_dict')"),
                                             ("nnunet", " (under 'state_dict')")])  # fmt: skip
@pytest.mark.parametrize("name", ["lcovnet", "unet3d"])
def test_official_weights_give_the_official_networks_logits(tmp_path, name, kind, under):
    official = _official(name, in_channels=2)
    path = tmp_path / "official.pt"
    torch.save(_checkpoint(official.state_dict(), kind), path)
    ours, found = load_model(name, 2, 3, path, "--weights", channels=WIDTHS)
    assert found == OFFICIAL[name][1] + under
    x = torch.randn(1, 2, 32, 32, 32)
    with torch.no_grad():
        expected, got = official(x), ours.eval()(x).logits
    assert len(got) == len(expected) == 4
    for level, (a, b) in enumerate(zip(got, expected)):
        assert a.shape == b.shape and (a - b).abs().max() < 1e-5, level


def test_official_weights_of_another_network_are_refused_naming_both(tmp_path):
    path = tmp_path / "official.pt"
    torch.save(_official("lcovnet").state_dict(), path)
    with pytest.raises(BenchError) as err:
        load_model("unet3d", 1, 3, path, "--teacher-checkpoint", channels=WIDTHS)
    assert str(err.value) == (
        f"--teacher-checkpoint {path} holds an official LCOV-Net state dict, which fits lcovnet, not unet3d"
    )


def test_weights_of_another_class_count_are_one_line_naming_the_file_and_both_shapes(tmp_path):
    path = tmp_path / "three.pt"
    torch.save(models.create_model("lcovnet", 1, 3, channels=WIDTHS).state_dict(), path)
    with pytest.raises(BenchError) as err:
        load_model("lcovnet", 1, 5, path, "--weights", channels=WIDTHS)
    message = str(err.value)
    assert message.startswith(f"--weights {path} does not fit lcovnet with 1 input channel(s) and 5 classes: ")
    assert "heads.0.weight has shape [3, 10, 1, 1, 1] in the file but [5, 10, 1, 1, 1] in the network" in message
    assert "(and 7 more difference(s))" in message and "\n" not in message


def test_official_weights_that_do_not_fit_name_the_official_tensor(tmp_path):
    path = tmp_path / "official.pt"
    torch.save(_official("lcovnet", classes=9).state_dict(), path)
    with pytest.raises(BenchError) as err:
        load_model("lcovnet", 1, 17, path, "--weights", channels=WIDTHS)
    assert "segout1.weight (heads.0.weight here) has shape [9, 10, 1, 1, 1] in the file" in str(err.value)


def test_plain_state_dict_and_our_checkpoint_load_and_say_so(tmp_path):
    source = models.create_model("unet3d", 1, 3, channels=WIDTHS)
    plain, ours = tmp_path / "plain.pt", tmp_path / "weights.pt"
    torch.save(source.state_dict(), plain)
    save_checkpoint(ours, {"model": source.state_dict(), "source": "checkpoint_best.pt"})
    for path, kind in ((plain, "plain state dict"), (ours, "segkd-bench checkpoint")):
        model, found = load_model("unet3d", 1, 3, path, "--weights", channels=WIDTHS)
        assert found == kind
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), source.state_dict().values()))


def test_the_format_read_is_noted_once_per_file(tmp_path, capsys):
    path = tmp_path / "official.pt"
    torch.save(_official("lcovnet").state_dict(), path)
    for _ in range(3):  # bench run loads --teacher-checkpoint to check it, then for every KD run
        note_format("--teacher-checkpoint", path, load_model("lcovnet", 1, 3, path, "x", channels=WIDTHS)[1])
    assert capsys.readouterr().err.splitlines() == [
        f"bench: --teacher-checkpoint {path}: read as official LCOV-Net state dict"
    ]


def test_weights_of_an_unknown_format_are_one_clear_line(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"backbone.conv.weight": torch.zeros(2, 1, 3, 3, 3), "backbone.conv.bias": torch.zeros(2)}, path)
    with pytest.raises(BenchError) as err:
        load_model("lcovnet", 1, 3, path, "--weights")
    assert str(err.value) == (
        f"--weights {path}: unknown weights format: none of its 2 tensor names (e.g. 'backbone.conv.weight', "
        "'backbone.conv.bias') is one of lcovnet's, nor are they the official LCOV-Net or U-Net names"
    )


def test_numpy_numbers_load_but_numpy_arrays_stay_refused(tmp_path):
    path = tmp_path / "arrays.pt"
    torch.save({"model_state_dict": _official("lcovnet").state_dict(), "class_dice": np.zeros(3)}, path)
    with pytest.raises(BenchError, match="refused: only tensors, numbers and strings are loaded"):
        load_model("lcovnet", 1, 3, path, "--weights", channels=WIDTHS)


def test_static_and_registry_patch_checks_give_the_same_line():
    with pytest.raises(BenchError) as registry:
        check_patch("lcovnet", (24, 32, 32))
    with pytest.raises(BenchError) as static:
        static_names.check_patch_stride("lcovnet", [24, 32, 32], static_names.model_strides())
    assert str(registry.value) == str(static.value)
    assert (
        str(static.value) == "patch 24x32x32 does not suit lcovnet: each side must be a multiple of its stride 16x16x16"
    )


def test_predict_weights_reads_an_official_checkpoint_and_notes_its_format(tmp_path):
    path = tmp_path / "lcovnet_best.pt"
    torch.save(_checkpoint(_official("lcovnet").state_dict(), "pymic"), path)
    spec = DeploySpec(model="lcovnet", in_channels=1, num_classes=3, labels={1: "liver", 2: "spleen"},
                      preprocessing=asdict(PreprocessSettings(normalization="zscore", crop=False)), patch=[32, 32, 32],
                      overlap=0.0, model_kwargs={"channels": WIDTHS})  # fmt: skip
    spec.write(tmp_path / "preprocessing.json")
    image = sitk.GetImageFromArray(np.random.default_rng(0).normal(size=(32, 32, 32)).astype(np.float32))
    sitk.WriteImage(image, str(tmp_path / "ct_0000.nii.gz"))
    proc = subprocess.run(bench_cmd("predict", "--device", "cpu", "--weights", str(path), "--preprocessing",
                                    str(tmp_path / "preprocessing.json"), "--input", str(tmp_path / "ct_0000.nii.gz"),
                                    "--output", str(tmp_path / "masks")),
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    note = f"bench: --weights {path}: read as official LCOV-Net state dict (under 'model_state_dict')"
    assert proc.stderr.count(note) == 1
    assert (tmp_path / "masks" / "ct.nii.gz").is_file()


def test_run_teacher_checkpoint_reads_an_official_checkpoint_and_notes_its_format_once(tiny_dataset, tmp_path):
    widths = [4, 8, 16, 32, 32]  # TINY_RUN's base_channels=4
    path = tmp_path / "teacher.pt"
    torch.manual_seed(0)
    torch.save(_checkpoint(official_unet(1, widths, 6).state_dict(), "nnunet"), path)  # five organs + background
    args = tiny_run_args(tiny_dataset, tmp_path / "res", "--kd", "kd", "--teacher-checkpoint", str(path), "--dry-run")
    proc = subprocess.run(bench_cmd(*args), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    note = f"bench: --teacher-checkpoint {path}: read as official U-Net (UNet_KD) state dict (under 'state_dict')"
    assert proc.stderr.count(note) == 1
