"""AttentionSpec.device_type: cpu / cuda without building a device name, other devices asked."""

from __future__ import annotations

import torch

from attnkit.backends import get_backend
from attnkit.functional import build_spec


def test_spec_device_type_without_building_a_device_name() -> None:
    q = torch.randn(1, 1, 2, 4)
    assert build_spec(q, q, q).device_type == "cpu"
    m = torch.empty(1, 1, 2, 4, device="meta")
    spec = build_spec(m, m, m)
    assert spec.device_type == "meta" == spec.device.type  # neither cpu nor cuda: asks the device
    assert "device 'meta' not in ('cpu', 'cuda')" in get_backend("math").not_supported_reasons(spec)
