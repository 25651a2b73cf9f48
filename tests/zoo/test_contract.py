"""Contract test over every registered backbone (timm's ``test_model_default_cfgs`` in spirit).

Random weights, a small input: the forward pass works, the pooled features have the width the
record states, the parameter count matches, and replacing the head works.
"""

from __future__ import annotations

import pytest
import timm
import torch

from graft.zoo import architecture_record, create_model, get_backbone
from graft.zoo.architectures import ARCHITECTURES
from graft.zoo.embedded import EMBEDDED

ALL_NAMES = [*EMBEDDED, *ARCHITECTURES]


def _test_size(name: str, default: int) -> int:
    record = get_backbone(name) if name in EMBEDDED else architecture_record(name)
    if record.library != "timm":
        return 64
    cfg = timm.models.get_pretrained_cfg(record.architecture)
    if cfg is not None and cfg.fixed_input_size:
        return int(cfg.input_size[-1])
    return default


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL_NAMES)
def test_backbone_contract(name: str) -> None:
    record = get_backbone(name) if name in EMBEDDED else architecture_record(name)
    model = create_model(record, pretrained=False)
    assert sum(p.numel() for p in model.parameters()) == record.params
    size = _test_size(name, 64 if "inception" not in name else 96)
    pixels = torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8)
    with torch.no_grad():
        assert model.pooled_features(pixels).shape == (2, record.feature_dim)
        model.reset_classifier(3)
        assert model(pixels).shape == (2, 3)
    assert model.num_classes == 3
