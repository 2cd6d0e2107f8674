"""The CNN with SE / spatial / CBAM blocks and the fully connected baseline (attnkit/models/vision.py)."""

from __future__ import annotations

import pytest
import torch

from attnkit.data import get_task
from attnkit.models import CNN, MLP, build_model, model_config_for_task
from attnkit.models.vision import ResidualBlock, block_attention
from attnkit.train import train

pytest.importorskip("sklearn")


@pytest.mark.parametrize("attention", ["none", "se", "spatial", "cbam"])
def test_cnn_shapes_maps_and_config_round_trip(attention):
    model = CNN(8, attention=attention)
    out = model(torch.rand(3, 1, 8, 8), return_maps=True)
    assert out.logits.shape == (3, 10) and len(out.maps) == 2
    keys = {"none": set(), "se": {"channel"}, "spatial": {"spatial"}, "cbam": {"channel", "spatial"}}[attention]
    assert set(out.maps[0]) == keys
    if "spatial" in keys:
        assert out.maps[0]["spatial"].shape == (3, 1, 8, 8) and out.maps[1]["spatial"].shape == (3, 1, 4, 4)
    if "channel" in keys:
        assert out.maps[1]["channel"].shape == (3, 64, 1, 1)
    again = build_model(dict(model.config))
    assert dict(again.config) == dict(model.config)
    assert sum(p.numel() for p in again.parameters()) == sum(p.numel() for p in model.parameters())


def test_a_gate_stuck_open_is_the_plain_block():
    """SE with σ(...) = 1 (zero weights, bias +50) must be the block without attention: the wiring of A."""
    torch.manual_seed(0)
    plain = ResidualBlock(4, 8, stride=2, attention="none", reduction=2, spatial_kernel=3).eval()
    se = ResidualBlock(4, 8, stride=2, attention="se", reduction=2, spatial_kernel=3).eval()
    se.load_state_dict(plain.state_dict(), strict=False)
    with torch.no_grad():
        se.attn.fc2.weight.zero_()
        se.attn.fc2.bias.fill_(50.0)
    x = torch.randn(2, 4, 6, 6)
    torch.testing.assert_close(se(x)[0], plain(x)[0])
    with torch.no_grad():
        se.attn.fc2.bias.fill_(-50.0)  # the gate shut: only the shortcut passes, y = ReLU(shortcut(x))
    torch.testing.assert_close(se(x)[0], torch.relu(plain.shortcut(x)), atol=1e-6, rtol=0)


def test_attention_names_and_bad_inputs_are_one_clear_error():
    assert block_attention("Squeeze_Excite") == "se" and block_attention("CBAM") == "cbam"
    with pytest.raises(ValueError, match="attention='bahdanau' is not an attention a CNN block takes; valid: none"):
        CNN(8, attention="bahdanau")
    model = CNN(8)
    with pytest.raises(ValueError, match="x has 3 channels but this cnn was built for in_channels=1"):
        model(torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match="x is 32x32 but this cnn was built for image_size=8; resize"):
        model(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"x must be a float image batch \(B, 1, 8, 8\)"):
        model(torch.rand(8, 8))
    with pytest.raises(ValueError, match="image_size=2 is too small for stages=3"):
        CNN(2, stages=3)
    with pytest.raises(ValueError, match="needs an image task"):
        model_config_for_task("cnn", get_task("reverse"))


def test_configs_are_sized_by_the_task():
    assert model_config_for_task("cnn", get_task("digits"))["stages"] == 2
    cfg = model_config_for_task("cnn", get_task("translated-digits"), attention="se")
    assert (cfg["image_size"], cfg["stages"], cfg["attention"]) == (32, 3, "se")
    mlp = build_model(model_config_for_task("mlp", get_task("digits"), hidden_dim=16, layers=1))
    assert isinstance(mlp, MLP) and sum(p.numel() for p in mlp.parameters()) == 64 * 16 + 16 + 16 * 10 + 10


def test_the_cnn_learns_digits_in_a_few_steps(one_thread):
    task = get_task("digits")
    torch.manual_seed(0)
    model = build_model(model_config_for_task("cnn", task, width=8, attention="cbam"))
    res = train(task, model, steps=60, eval_every=60, lr=5e-3, warmup=5, progress=False)
    assert res["accuracy"] > 0.6 and res["examples"] == 359  # chance is 0.1
