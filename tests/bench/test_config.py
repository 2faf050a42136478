"""Presets: shipped TOML files, overrides and validation."""

import pytest

from bench.errors import BenchError
from bench.training.config import RUN_PRESETS, RunConfig, load_config, parse_override, valid_keys


@pytest.mark.parametrize("name", RUN_PRESETS)
def test_every_shipped_preset_loads_and_validates(name):
    config = load_config(name)
    assert config.description
    assert len(config.patch) == 3


def test_paper_preset_follows_the_pymic_protocol():
    config = load_config("paper")
    assert config.patch == [64, 128, 128]
    assert config.batch_size == 2
    assert (config.optimizer, config.lr, config.weight_decay) == ("adam", 1e-3, 1e-5)
    assert config.iterations == 15_000
    assert config.eval_patch() == [64, 160, 160]
    assert config.normalization == "zscore"


def test_overrides_are_typed_by_toml_and_change_the_hash():
    base = load_config("smoke")
    changed = load_config("smoke", ["iterations=7", "patch=[32, 32, 32]", "optimizer=sgd", "lr=1"])
    assert (changed.iterations, changed.patch, changed.optimizer, changed.lr) == (7, [32, 32, 32], "sgd", 1.0)
    assert changed.hash() != base.hash()
    assert load_config("smoke").hash() == base.hash()


def test_description_does_not_change_the_hash():
    assert load_config("smoke", ['description="other words"']).hash() == load_config("smoke").hash()


def test_unknown_preset_key_lists_valid_keys():
    with pytest.raises(BenchError) as err:
        load_config("smoke", ["iteratons=5"])
    assert "unknown preset key 'iteratons'" in str(err.value)
    assert all(k in str(err.value) for k in ("iterations", "patch", "lr"))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("iterations=0", "iterations must be at least 1"),
        ("iterations=ten", "must be int"),
        ("optimizer=rmsprop", "optimizer must be sgd or adam"),
        ("patch=[32, 32]", "patch must be three sizes from 1 to 1024"),
        ("spacing=[1, 2]", "spacing must be"),
        ("amp=fp8", "amp must be"),
        ("eval_checkpoint=worst", "eval_checkpoint must be best or last"),
        ("model_kwargs={unet3d=0}", "model_kwargs must be a table of tables"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(BenchError, match=message):
        load_config("smoke", [override])


def test_preset_file_and_missing_file(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('description = "mine"\niterations = 3\n')
    config = load_config(str(path))
    assert config.iterations == 3 and config.patch == RunConfig().patch
    with pytest.raises(BenchError, match="neither a shipped preset"):
        load_config(str(tmp_path / "absent.toml"))
    path.write_text("iterations = = 3")
    with pytest.raises(BenchError, match="not valid TOML"):
        load_config(str(path))


def test_override_parsing():
    assert parse_override("spacing=keep") == ("spacing", "keep")
    assert parse_override("window=[-100, 200]") == ("window", [-100, 200])
    with pytest.raises(BenchError, match="key=value"):
        parse_override("iterations")
    assert "kd_init" in valid_keys()


def test_smoke_preset_evaluates_the_last_checkpoint_and_trains_the_unet_without_dropout():
    config = load_config("smoke")
    assert config.eval_checkpoint == "last"
    assert config.model_kwargs == {"unet3d": {"dropout": 0.0}}
    assert load_config("smoke", ["model_kwargs={unet3d={dropout=0.1}}"]).hash() != config.hash()


def test_presets_mirror_y_and_x_and_train_every_organ_but_smoke_which_scopes_its_choice_to_the_builtin_set():
    assert RunConfig().flip_axes == ["y", "x"] and RunConfig().organs == []
    assert load_config("kd_gap").flip_axes == ["y"]  # the smoke protocol with other widths (bench/presets/kd_gap.toml)
    for name in set(RUN_PRESETS) - {"smoke", "kd_gap"}:
        config = load_config(name)
        assert config.flip_axes == ["y", "x"] and config.organs_for("SegKDSynthAbdomen") == [], name
    smoke = load_config("smoke")
    assert smoke.flip_axes == ["y"]
    assert smoke.organs_for("SegKDSynthAbdomen") == ["liver", "spleen", "kidney_left", "kidney_right", "stomach"]
    assert smoke.organs_for("BTCV") == []
    listed = load_config("smoke", ['organs=["liver","spleen"]', 'flip_axes=["y","x"]'])
    assert listed.organs_for("BTCV") == listed.organs_for("SegKDSynthAbdomen") == ["liver", "spleen"]
    assert listed.flip_axes == ["y", "x"] and listed.hash() != smoke.hash()
    assert load_config("smoke", ['organs={WORD=["liver"]}']).organs_for("WORD") == ["liver"]


def test_cosine_schedule_starts_at_the_base_rate_halves_midway_and_ends_at_zero():
    from bench.training.trainer import SCHEDULES

    cosine = SCHEDULES["cosine"]
    assert [cosine(0.01, i, 800) for i in (0, 400, 800)] == pytest.approx([0.01, 0.005, 0.0], abs=1e-12)
    assert load_config("smoke").schedule == "cosine"
    with pytest.raises(BenchError, match="schedule must be poly, cosine or constant"):
        load_config("smoke", ["schedule=step"])
