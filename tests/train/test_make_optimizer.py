"""attnkit.train.make_optimizer: AdamW on torch's fused kernel where there is one, same update."""

from __future__ import annotations

import pytest
import torch

from attnkit.train import make_optimizer


def test_first_step_by_hand_and_fused_on_cpu() -> None:
    # AdamW's first step: m̂ = g, v̂ = g², so θ <- θ (1 - lr λ) - lr g / (|g| + ε)
    # θ = 1, g = 0.5, lr = 0.1, λ = 0.1:  1 · 0.99 - 0.1 = 0.89
    p = torch.nn.Parameter(torch.tensor([1.0]))
    frozen = torch.nn.Parameter(torch.tensor([3.0]), requires_grad=False)
    opt = make_optimizer([p, frozen], lr=0.1, weight_decay=0.1)
    assert opt.param_groups[0]["fused"] is True  # torch has a fused CPU kernel
    assert opt.param_groups[0]["params"] == [p]  # frozen parameters are left out
    p.grad = torch.tensor([0.5])
    opt.step()
    torch.testing.assert_close(p.detach(), torch.tensor([0.89]))


def test_matches_torch_default_adamw_over_steps_and_takes_param_groups() -> None:
    torch.manual_seed(0)
    a = torch.nn.Linear(5, 3)
    b = torch.nn.Linear(5, 3)
    b.load_state_dict(a.state_dict())
    def groups(m):
        return [{"params": [m.weight], "weight_decay": 0.1}, {"params": [m.bias], "weight_decay": 0.0}]
    ours = make_optimizer(groups(a), lr=1e-2, betas=(0.9, 0.99))
    ref = torch.optim.AdamW(groups(b), lr=1e-2, betas=(0.9, 0.99), foreach=False)
    assert [g["weight_decay"] for g in ours.param_groups] == [0.1, 0.0]
    x = torch.randn(8, 5)
    for _ in range(5):
        for m, o in ((a, ours), (b, ref)):
            o.zero_grad()
            m(x).square().mean().backward()
            o.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)


def test_falls_back_where_torch_has_no_fused_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    real = torch.optim.AdamW

    def no_fused(*args, **kwargs):
        if kwargs.get("fused"):
            raise RuntimeError("`fused=True` requires all the params to be floating point Tensors of supported devices")
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.optim, "AdamW", no_fused)
    opt = make_optimizer([torch.nn.Parameter(torch.ones(2))], lr=1e-3)
    assert not opt.param_groups[0]["fused"]


def test_a_run_saved_without_the_fused_kernel_resumes_on_it(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint written by the multi-tensor AdamW (runs from before make_optimizer) resumes,
    keeps its Adam moments, and continues on the fused kernel."""
    from attnkit.data import get_task
    from attnkit.models import build_model, model_config_for_task
    from attnkit.train import load_checkpoint, loop, resume_run, train

    task = get_task("reverse", train=64, valid=8, test=8, min_len=2, max_len=4)
    torch.manual_seed(0)
    model = build_model(model_config_for_task("seq2seq", task, hidden_dim=8, embed_dim=8))
    made: list[torch.optim.Optimizer] = []
    real = loop.make_optimizer
    kw = dict(batch_size=16, eval_every=2, eval_examples=8, warmup=1, progress=False)
    monkeypatch.setattr(
        loop, "make_optimizer", lambda params, **k: made.append(torch.optim.AdamW(params, **k)) or made[-1]
    )
    train(task, model, steps=2, out_dir=tmp_path, **kw)
    saved, meta = load_checkpoint(tmp_path, "last")
    assert not meta["train"]["optimizer"]["param_groups"][0]["fused"]
    monkeypatch.setattr(loop, "make_optimizer", lambda params, **k: made.append(real(params, **k)) or made[-1])
    resume_run(tmp_path, steps=4, progress=False)
    resumed = made[-1]
    assert resumed.param_groups[0]["fused"] is True
    after, meta = load_checkpoint(tmp_path, "last")
    assert meta["step"] == 4
    steps = [v for k, v in after.items() if k.endswith("/step")]
    assert steps and all(float(s) == 4.0 for s in steps)  # the moments carried on from step 2
