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
