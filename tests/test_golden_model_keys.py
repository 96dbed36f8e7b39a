"""Official state-dict names and shapes (golden/real_model_keys.json) from create_model."""
from __future__ import annotations

import json

import pytest
import torch

from oltr.model import create_model

# config -> (backbone, stage, K); the ResNet-152 nets are built on the meta device (no memory).
CONFIGS = {
    "ImageNet_LT/stage_1": ("resnet10", "plain", 1000),
    "ImageNet_LT/stage_2_meta_embedding": ("resnet10", "oltr", 1000),
    "Places_LT/stage_1": ("resnet152", "plain", 365),
    "Places_LT/stage_2_meta_embedding": ("resnet152", "oltr", 365),
}


@pytest.fixture(scope="module")
def real_keys(golden_dir):
    with open(golden_dir / "real_model_keys.json") as f:
        return json.load(f)


def _shapes(module) -> dict[str, list[int]]:
    return {"module." + k: list(v.shape) for k, v in module.state_dict().items()}


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_state_dict_keys_and_shapes_match_the_official_nets(real_keys, config):
    backbone, stage, num_classes = CONFIGS[config]
    expected = real_keys[config]
    with torch.device("meta"):
        model = create_model(backbone, num_classes, stage)
    feat = _shapes(model.feat_model)
    assert list(feat) == list(expected["feat_model"])  # same names, same order
    assert feat == expected["feat_model"]
    assert _shapes(model.classifier) == expected["classifier"]
    assert len(feat) == expected["feat_model_num_tensors"]
    # the official count is the parameters plus the BN running statistics
    counted = sum(v.numel() for k, v in model.feat_model.state_dict().items() if not k.endswith("num_batches_tracked"))
    assert counted == expected["feat_model_num_params"]
