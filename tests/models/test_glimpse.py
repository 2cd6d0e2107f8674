"""The Recurrent Attention Model (attnkit/models/glimpse.py): the retina by hand, where gradients go, errors."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from attnkit.data import get_task
from attnkit.models import RAM, build_model, model_config_for_task
from attnkit.models.glimpse import Retina, location_to_pixels
from attnkit.train import train

IMG = torch.arange(16.0).view(1, 1, 4, 4)  # pixel (row r, col c) = 4r + c


def test_retina_crops_and_averages_by_hand():
    retina = Retina(4, 2, 2)
    centre = retina(IMG, torch.zeros(1, 2))  # (1, k=2, C=1, 2, 2)
    assert centre.shape == (1, 2, 1, 2, 2)
    torch.testing.assert_close(centre[0, 0, 0], torch.tensor([[5.0, 6.0], [9.0, 10.0]]))  # the middle 2x2
    # the 4x4 patch is the whole image, each 2x2 block averaged: (0+1+4+5)/4 = 2.5 ...
    torch.testing.assert_close(centre[0, 1, 0], torch.tensor([[2.5, 4.5], [10.5, 12.5]]))
    corner = retina(IMG, torch.tensor([[-0.5, -0.5]]))  # centred between pixels (0,0) and (1,1)
    torch.testing.assert_close(corner[0, 0, 0], torch.tensor([[0.0, 1.0], [4.0, 5.0]]))
    # the 4x4 patch reads the 2x2-pooled image P = [[2.5, 4.5], [10.5, 12.5]] at pooled coordinates -0.5 and
    # 0.5 (off its grid by half a block): bilinear weights 1/4 on each of 4 pooled pixels, black beyond the
    # top and left edges: (0+0+0+2.5)/4, (0+0+2.5+4.5)/4, (0+2.5+0+10.5)/4, (2.5+4.5+10.5+12.5)/4
    torch.testing.assert_close(corner[0, 1, 0], torch.tensor([[0.625, 1.75], [3.25, 7.5]]))
    right = retina(IMG, torch.tensor([[0.5, 0.0]]))  # x (columns) first, as F.grid_sample
    torch.testing.assert_close(right[0, 0, 0], torch.tensor([[6.0, 7.0], [10.0, 11.0]]))
    assert location_to_pixels(torch.tensor([-0.5, 0.0, 1.0]), 4).tolist() == [0.5, 1.5, 3.5]


def _per_pixel_retina(x, loc, patch_size, scales):
    """The reference: every pixel of each (p·2^i)² patch sampled, then each 2^i x 2^i block averaged."""
    B, C, S, _ = x.shape
    out = []
    for i in range(scales):
        size, f = patch_size * 2 ** i, 2 ** i
        offs = (torch.arange(size, dtype=x.dtype) - (size - 1) / 2) * (2 / S)  # (size,)
        gy, gx = torch.meshgrid(offs, offs, indexing="ij")
        grid = loc.view(B, 1, 1, 2) + torch.stack([gx, gy], -1)  # (B, size, size, 2)
        patch = F.grid_sample(x, grid, align_corners=False)  # (B, C, size, size)
        out.append(patch.reshape(B, C, patch_size, f, patch_size, f).mean((3, 5)))  # (B, C, p, p)
    return torch.stack(out, 1)  # (B, k, C, p, p)


def test_retina_equals_the_per_pixel_average_on_the_pooling_grid():
    torch.manual_seed(0)
    x = torch.rand(6, 2, 32, 32)
    retina = Retina(32, 8, 3)
    # shifts by multiples of 4 px (the largest pooling block) keep every scale's blocks on its grid
    px = torch.tensor([[0, 0], [4, -8], [-12, 4], [8, 8], [12, -16], [-4, 12]], dtype=torch.float32)
    loc = px * (2 / 32)  # (6, 2) in [-1, 1]
    torch.testing.assert_close(retina(x, loc), _per_pixel_retina(x, loc, 8, 3), atol=1e-6, rtol=0)
    off = loc + 1 / 32  # half a pixel off the grid: the pyramid blurs by at most a block's bilinear mix
    gap = (retina(x, off) - _per_pixel_retina(x, off, 8, 3)).abs()
    assert float(gap[:, 0].max()) < 1e-6  # the finest scale is the image itself: still exact
    assert 0 < float(gap[:, 1:].max()) < 1.0


def test_retina_and_ram_refuse_what_does_not_fit_the_canvas():
    with pytest.raises(ValueError, match=r"patch_size=40 is larger than the canvas \(image_size=32\)"):
        Retina(32, 40, 1)
    with pytest.raises(ValueError, match=r"largest glimpse .* = 64 pixels\) does not fit the 32x32 canvas; use "
                                         r"scales <= 3 or patch_size <= 4"):
        RAM(32, patch_size=8, scales=4)
    retina = Retina(4, 2, 2)
    with pytest.raises(ValueError, match=r"loc must be \(B, 2\) = \(1, 2\)"):
        retina(IMG, torch.zeros(2))
    with pytest.raises(ValueError, match=r"loc must lie in \[-1, 1\]"):
        retina(IMG, torch.tensor([[1.5, 0.0]]))
    with pytest.raises(ValueError, match="x has 3 channels but this ram was built for in_channels=1"):
        RAM(16, patch_size=4, scales=2)(torch.rand(2, 3, 16, 16))
    with pytest.raises(ValueError, match="x is 8x8 but this ram was built for image_size=16"):
        RAM(16, patch_size=4, scales=2)(torch.rand(2, 1, 8, 8))
    for bad, match in (({"policy": "greedy"}, "policy must be one of learned, random"),
                       ({"cell": "gru"}, "cell must be one of lstm, rnn"), ({"glimpses": 0}, "glimpses must be"),
                       ({"location_std": 0.0}, "location_std must be in")):
        with pytest.raises(ValueError, match=match):
            RAM(16, patch_size=4, scales=2, **bad)


def _tiny(**kw):
    torch.manual_seed(0)
    return RAM(16, **{"patch_size": 4, "scales": 2, "glimpses": 3, "glimpse_dim": 8, "hidden_dim": 12, **kw})


def test_forward_shapes_first_glimpse_at_the_centre_and_mean_locations_at_eval():
    model = _tiny()
    x = torch.rand(5, 1, 16, 16)
    out = model(x)
    assert out.logits.shape == (5, 10) and out.locations.shape == (5, 3, 2)
    assert out.log_prob.shape == (5, 2) and out.baseline.shape == (5, 2)
    assert torch.equal(out.locations[:, 0], torch.zeros(5, 2))
    assert float(out.locations.abs().max()) <= 1.0
    model.eval()
    a, b = model(x), model(x)
    assert a.log_prob is None and torch.equal(a.locations, b.locations)  # the policy's mean, no draw
    model.train()
    assert not torch.equal(model(x).locations, model(x).locations)  # drawn around it


def test_where_each_loss_sends_its_gradient():
    model, x = _tiny(), torch.rand(4, 1, 16, 16)
    out = model(x)
    out.logits.sum().backward()  # the classification side: no gradient reaches the policy or the baseline
    assert model.locator.weight.grad is None and model.baseline.linear.weight.grad is None
    assert model.what.weight.grad is not None and model.core.weight_hh.grad is not None
    model.zero_grad(set_to_none=True)
    out = model(x)
    (-out.log_prob.sum()).backward()  # REINFORCE (detach_policy, the default): the location net alone
    assert float(model.locator.weight.grad.abs().sum()) > 0
    assert all(p.grad is None for n, p in model.named_parameters() if not n.startswith("locator"))
    paper, x = _tiny(detach_policy=False), torch.rand(4, 1, 16, 16)
    (-paper(x).log_prob.sum()).backward()  # the paper's: REINFORCE trains the core and the glimpse net too
    reached = {n.split(".")[0] for n, p in paper.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert reached == {"locator", "core", "what", "what_out", "where", "where_out"}


def test_log_prob_is_the_gaussian_density_of_the_drawn_location():
    model = _tiny(location_std=0.5)
    torch.manual_seed(1)
    out = model(torch.rand(3, 1, 16, 16))
    # N(l | μ, σ²) per coordinate: log p = -(l-μ)²/(2σ²) - log σ - ½ log 2π <= -log σ - ½ log 2π
    top = 2 * (-torch.log(torch.tensor(0.5)) - 0.5 * torch.log(torch.tensor(2 * torch.pi)))
    assert bool((out.log_prob <= top + 1e-6).all())


def test_the_location_network_reads_the_state_and_the_retina_or_the_state_alone():
    model, paper = _tiny(), _tiny(locator_input="state")
    assert model.locator.in_features == 12 + 2 * 1 * 4 * 4  # D + k·C·p·p
    assert paper.locator.in_features == 12  # the paper's W_μ h_t
    model.eval()
    x = torch.rand(3, 1, 16, 16)
    with torch.no_grad():
        model.locator.weight[:, :12] = 0  # the state's columns off: l_2 is the retina's part alone
        W, b = model.locator.weight[:, 12:], model.locator.bias
        rho1 = model.retina(x, torch.zeros(3, 2)).flatten(1)  # (3, 32): the centre glimpse's pixels
        want = torch.tanh(rho1 @ W.T + b)  # (3, 2)
        torch.testing.assert_close(model(x).locations[:, 1], want)
    with pytest.raises(ValueError, match="locator_input must be one of state\\+retina, state"):
        _tiny(locator_input="pixels")


def test_random_policy_is_the_baseline_with_the_same_budget():
    model = _tiny(policy="random")
    out = model(torch.rand(4, 1, 16, 16))
    assert out.log_prob is None and out.baseline is None and out.locations.shape == (4, 3, 2)
    model.eval()
    x = torch.rand(4, 1, 16, 16)
    assert torch.equal(model(x).locations, model(x).locations)  # the same random glimpses at every evaluation
    learned = _tiny()
    assert sum(p.numel() for p in learned.parameters()) == sum(p.numel() for p in model.parameters())


def test_ram_trains_in_the_generic_loop_and_rebuilds_from_its_config(one_thread):
    pytest.importorskip("sklearn")
    task = get_task("translated-digits", canvas=16)
    cfg = model_config_for_task("ram", task, glimpses=2, glimpse_dim=16, hidden_dim=32)
    assert (cfg["image_size"], cfg["patch_size"], cfg["scales"]) == (16, 4, 3)
    torch.manual_seed(0)
    model = build_model(cfg)
    res = train(task, model, steps=12, eval_every=6, batch_size=32, progress=False)
    assert 0.0 <= res["accuracy"] <= 1.0 and res["examples"] == 359 * 4
    assert dict(build_model(dict(model.config)).config) == dict(model.config)


def _log_prob_of(model, state, loc):
    """log N(loc | tanh(W_μ state), σ²) summed over (x, y): the policy's density of a fixed location."""
    mu = torch.tanh(model.locator(state))
    return torch.distributions.Normal(mu, model.config.location_std).log_prob(loc).sum(-1)


def test_reinforce_raises_the_log_prob_of_a_rewarded_location_and_lowers_an_unrewarded_one():
    model = _tiny(location_std=0.2, glimpses=2)  # one decision: l_2 ~ π(· | h_1), h_1 from the centre glimpse alone
    x = torch.rand(2, 1, 16, 16)
    torch.manual_seed(3)
    out = model(x)
    pred = out.logits.argmax(-1)
    label = torch.stack([pred[0], (pred[1] + 1) % 10])  # sample 0 is right (R = 1), sample 1 wrong (R = 0)
    with torch.no_grad():
        model.baseline.linear.bias.fill_(0.5)  # b = 0.5: advantages +0.5 and -0.5
        centre = torch.zeros(2, 2)
        rho1 = model.retina(x, centre).flatten(1)  # (2, k·C·p·p): the centre glimpse's pixels
        h1 = torch.cat([model.core(model.glimpse(x, centre))[0], rho1], 1)  # (2, D + k·C·p·p): the policy's input
    loc = out.locations[:, 1]  # the drawn l_2
    before = _log_prob_of(model, h1, loc).detach()
    torch.manual_seed(3)  # the same draw again
    loss, m = model.loss(SimpleNamespace(x=x, label=label))
    assert m["reward"] == 0.5
    model.zero_grad(set_to_none=True)
    loss.backward()
    with torch.no_grad():
        for p in model.locator.parameters():
            p -= 1e-3 * p.grad  # one small plain gradient step on the location network (first order)
        after = _log_prob_of(model, h1, loc)
    assert float(after[0]) > float(before[0])  # the rewarded location became more likely
    assert float(after[1]) < float(before[1])  # the unrewarded one less


def test_random_policy_looks_where_the_learned_one_does_not():
    learned, random = _tiny(), _tiny(policy="random")
    random.load_state_dict(learned.state_dict())  # the same weights: only where the glimpses go differs
    learned.eval(), random.eval()
    x, other = torch.rand(4, 1, 16, 16), torch.rand(4, 1, 16, 16)
    a, b = learned(x).locations, random(x).locations  # (4, 3, 2)
    assert torch.equal(a[:, 0], b[:, 0])  # both start at the centre
    assert not torch.allclose(a[:, 1:], b[:, 1:])
    assert not torch.allclose(learned(other).locations, a)  # the policy's mean follows the image ...
    assert torch.equal(random(other).locations, b)  # ... random glimpses do not


def test_ram_learns_a_tiny_translated_task_in_seconds(one_thread):
    """Convergence smoke test: 2 glimpses on 16x16 canvases, far above chance (10 %) after 400 steps."""
    pytest.importorskip("sklearn")
    task = get_task("translated-digits", canvas=16)
    torch.manual_seed(0)
    model = build_model(model_config_for_task("ram", task, glimpses=2, glimpse_dim=32, hidden_dim=64))
    losses = []
    res = train(task, model, steps=400, eval_every=400, batch_size=128, lr=4e-3, warmup=20, progress=False,
                callback=lambda step, m: losses.append(m["loss"]))
    assert res["accuracy"] >= 0.35, res["accuracy"]  # 48 % when measured
    assert sum(losses[-30:]) < sum(losses[:30])


def test_spatial_locator_looks_at_the_soft_argmax_of_the_coarse_patch_by_hand():
    model = _tiny(locator="spatial")  # 16x16, p=4, k=2: the coarse patch is the centre 8x8 pooled by 2
    assert model.locator_state.out_features == 16  # a score for each of the p·p coarse pixels
    with torch.no_grad():
        first, second = model.locator[0], model.locator[2]
        for conv in (first, second):
            conv.weight.zero_(), conv.bias.zero_()
        first.weight[0, 0, 1, 1] = 1.0  # channel 0 copies the pixel ...
        second.weight[0, 0, 1, 1] = 50.0  # ... and the score is 50 x it
        model.locator_state.weight.zero_(), model.locator_state.bias.zero_()
    x = torch.zeros(1, 1, 16, 16)
    x[0, 0, 4:6, 10:12] = 1.0  # a 2x2 block: the coarse patch's pixel (row 0, col 3), the mean of rows 4-5, cols 10-11
    model.eval()
    with torch.no_grad():
        loc = model(x).locations[0, 1]
    # that pixel's centre: (x, y) = (10.5, 4.5) pixels = ((2·10.5 + 1)/16 - 1, (2·4.5 + 1)/16 - 1) = (0.375, -0.375)
    torch.testing.assert_close(loc, torch.tensor([0.375, -0.375]), atol=1e-4, rtol=0)
    assert location_to_pixels(loc, 16).tolist() == pytest.approx([10.5, 4.5], abs=1e-3)
    model.train()
    model.zero_grad(set_to_none=True)
    (-model(torch.rand(4, 1, 16, 16)).log_prob.sum()).backward()  # REINFORCE reaches the location network alone
    reached = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert reached and all(n.startswith(("locator.", "locator_state.")) for n in reached), reached
    with pytest.raises(ValueError, match="locator='spatial' .* needs locator_input='state\\+retina'"):
        _tiny(locator="spatial", locator_input="state")
    with pytest.raises(ValueError, match="locator must be one of linear, spatial"):
        _tiny(locator="conv")


def test_step_loss_adds_the_cross_entropy_of_every_earlier_glimpse():
    plain, deep = _tiny(), _tiny(step_loss=0.5)  # the same weights (seed 0): step_loss adds no parameter
    x, label = torch.rand(6, 1, 16, 16), torch.tensor([0, 1, 2, 3, 4, 5])
    batch = SimpleNamespace(x=x, label=label)
    torch.manual_seed(3)
    assert plain(x).step_logits is None
    torch.manual_seed(3)
    out = deep(x)
    assert out.step_logits.shape == (6, 2, 10)  # (B, T-1, K): glimpses 1 and 2 of 3
    torch.manual_seed(3)
    base, _ = plain.loss(batch)
    torch.manual_seed(3)
    total, m = deep.loss(batch)
    steps = out.step_logits.detach()
    by_hand = (F.cross_entropy(steps[:, 0], label) + F.cross_entropy(steps[:, 1], label)) / 2
    assert m["step_loss"] == pytest.approx(float(by_hand), rel=1e-5)
    assert float((total - base).detach()) == pytest.approx(0.5 * float(by_hand), rel=1e-4)
    deep.eval()
    assert deep(x).step_logits is None  # evaluation reads the last glimpse only
    with pytest.raises(ValueError, match="step_loss must be >= 0"):
        _tiny(step_loss=-1)


def test_patch_fraction_sizes_the_fovea_on_any_canvas_and_the_presets_fit_every_canvas():
    from attnkit.presets import model_options

    pytest.importorskip("sklearn")
    # the presets' 1/8: round(S/8) pixels at every scale that fits, the widest the canvas (32x32: 4, 8, 16, 32)
    for canvas, want in ((16, (2, 4)), (32, (4, 4)), (64, (8, 4)), (8, (1, 4)), (40, (5, 4)), (12, (2, 3))):
        task = get_task("translated-digits", canvas=canvas)
        cfg = model_config_for_task("ram", task, **model_options(task.name, "ram"))
        assert (cfg["patch_size"], cfg["scales"]) == want, canvas
        assert cfg["patch_size"] * 2 ** (cfg["scales"] - 1) <= canvas
        build_model(cfg)  # the presets train on a canvas of any size
    task = get_task("translated-digits")  # 3/16 of 32 is 6 px: 6, 12, 24 (a fourth, 48, would not fit)
    cfg = model_config_for_task("ram", task, patch_fraction=3 / 16)
    assert (cfg["patch_size"], cfg["scales"]) == (6, 3)
    with pytest.raises(ValueError, match="patch_fraction must be in \\(0, 1\\]"):
        model_config_for_task("ram", get_task("translated-digits"), patch_fraction=1.5)
