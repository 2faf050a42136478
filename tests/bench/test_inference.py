import numpy as np
import pytest
import torch

import models
from bench.errors import BenchError
from bench.inference import predict_labels, predict_logits

PATCH = (32, 32, 32)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return models.create_model("lcovnet", 1, 3, base_channels=4)


def test_gaussian_blending_equals_a_direct_forward_when_the_volume_is_one_patch(model):
    image = torch.randn(1, *PATCH)
    logits = predict_logits(model, image, PATCH)
    with torch.inference_mode():
        direct = model(image[None]).logits[0][0]
    assert logits.shape == (3, *PATCH)
    torch.testing.assert_close(logits, direct, rtol=1e-5, atol=1e-5)


def test_output_has_the_input_shape_for_a_volume_smaller_than_the_patch(model):
    image = torch.randn(1, 20, 24, 17)
    assert predict_logits(model, image, PATCH).shape == (3, 20, 24, 17)
    labels = predict_labels(model, image, PATCH)
    assert labels.shape == (20, 24, 17) and labels.dtype == np.uint8


def test_output_has_the_input_shape_for_a_volume_larger_than_the_patch(model):
    image = torch.randn(1, 1, 40, 48, 36)
    logits = predict_logits(model, image, PATCH, overlap=0.25, sw_batch_size=2)
    assert logits.shape == (1, 3, 40, 48, 36) and logits.dtype == torch.float32
    labels = predict_labels(model, image, PATCH, overlap=0.25)
    assert labels.shape == (40, 48, 36)
    assert set(np.unique(labels)) <= {0, 1, 2}
    np.testing.assert_array_equal(labels, logits[0].argmax(0).numpy())


def test_bf16_autocast_and_channels_last_on_cpu_agree_with_fp32(model):
    image = torch.randn(1, 32, 32, 48)
    reference = predict_logits(model, image, PATCH)
    fast = predict_logits(
        model, image, PATCH, amp_dtype=torch.bfloat16, memory_format=torch.channels_last_3d, stitch_device="cpu"
    )
    assert fast.dtype == torch.float32
    torch.testing.assert_close(fast, reference, rtol=0.05, atol=0.1)


def test_fp16_on_cpu_and_a_batch_of_two_are_refused(model):
    with pytest.raises(BenchError, match="fp16"):
        predict_logits(model, torch.randn(1, *PATCH), PATCH, amp_dtype=torch.float16)
    with pytest.raises(BenchError, match="shape"):
        predict_logits(model, torch.randn(2, 1, *PATCH), PATCH)
