"""The drop-in inside torch's own layers: TransformerEncoderLayer, TransformerDecoderLayer,
TransformerEncoder and Transformer, against the same layers with torch's attention and the
same weights, in training and in inference (eval + no_grad / inference_mode, where torch's
encoder layer has a fused fast path that would bypass the drop-in's forward)."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch

from attnkit.nn import TorchMultiheadAttention
from attnkit.nn._common import record_specs

E, H = 8, 2


def _swap(model: torch.nn.Module) -> int:
    """Replace every torch MultiheadAttention in ``model`` by the drop-in with the same weights."""
    n = 0
    for mod in model.modules():
        for name in ("self_attn", "multihead_attn"):
            ref = getattr(mod, name, None)
            if isinstance(ref, torch.nn.MultiheadAttention):
                ours = TorchMultiheadAttention(ref.embed_dim, ref.num_heads, batch_first=ref.batch_first,
                                               bias=ref.in_proj_bias is not None, dtype=ref.out_proj.weight.dtype)
                ours.load_state_dict(ref.state_dict())
                ours.train(ref.training)
                setattr(mod, name, ours)
                n += 1
    return n


MODES = {
    "train": contextlib.nullcontext,  # training mode, gradients on
    "eval": contextlib.nullcontext,  # eval mode, gradients on: torch's ordinary path
    "eval_no_grad": torch.no_grad,  # torch's fused fast path for its own attention
    "inference_mode": torch.inference_mode,
}


def _run(model, mode, *args, **kw):
    model.train(mode == "train")
    with MODES[mode](), record_specs() as specs:
        out = model(*args, **kw)
    return out, specs


def _pair(layer):
    torch.manual_seed(0)
    ref = layer().double()
    ours = copy.deepcopy(ref)
    assert _swap(ours) > 0
    return ref, ours


def _padding(N: int, L: int) -> torch.Tensor:
    lens = torch.tensor([L, L - 2][:N])
    return torch.arange(L)[None, :] >= lens[:, None]  # (N, L) torch's polarity: True = padding


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("masks", ["none", "padding", "causal"])
def test_encoder_layer_matches_torch(mode, norm_first, batch_first, masks):
    ref, ours = _pair(lambda: torch.nn.TransformerEncoderLayer(
        E, H, dim_feedforward=16, dropout=0.0, batch_first=batch_first, norm_first=norm_first))
    N, L = 2, 5
    x = torch.randn(N, L, E, dtype=torch.float64) if batch_first else torch.randn(L, N, E, dtype=torch.float64)
    kw = {}
    if masks == "padding":
        kw["src_key_padding_mask"] = _padding(N, L)
    if masks == "causal":
        kw["src_mask"] = torch.nn.Transformer.generate_square_subsequent_mask(L, dtype=torch.float64)
        kw["is_causal"] = True
    want, _ = _run(ref, mode, x, **kw)
    got, specs = _run(ours, mode, x, **kw)
    assert specs, "the drop-in's forward did not run (torch's fused path bypassed it)"
    torch.testing.assert_close(got, want)


def test_encoder_layer_gradients_match_torch():
    ref, ours = _pair(lambda: torch.nn.TransformerEncoderLayer(E, H, dim_feedforward=16, dropout=0.0,
                                                               batch_first=True))
    x = torch.randn(2, 5, E, dtype=torch.float64)
    pad = _padding(2, 5)
    ref(x, src_key_padding_mask=pad).square().sum().backward()
    ours(x, src_key_padding_mask=pad).square().sum().backward()
    for (n, p), (_, r) in zip(ours.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(p.grad, r.grad, msg=n)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_matches_torch(mode, norm_first):
    ref, ours = _pair(lambda: torch.nn.TransformerDecoderLayer(
        E, H, dim_feedforward=16, dropout=0.0, batch_first=True, norm_first=norm_first))
    tgt, mem = torch.randn(2, 4, E, dtype=torch.float64), torch.randn(2, 6, E, dtype=torch.float64)
    kw = {
        "tgt_mask": torch.nn.Transformer.generate_square_subsequent_mask(4, dtype=torch.float64),
        "tgt_is_causal": True,
        "memory_key_padding_mask": _padding(2, 6),
    }
    want, _ = _run(ref, mode, tgt, mem, **kw)
    got, specs = _run(ours, mode, tgt, mem, **kw)
    assert len(specs) == 2  # self-attention and cross-attention both ran on attnkit
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("mode", list(MODES))
def test_encoder_stack_built_with_torch_attention_then_swapped(mode):
    """TransformerEncoder decided at construction (with torch's attention) to nest padded batches in
    inference; its layers then get NestedTensors, which the drop-in takes and returns."""
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(E, H, dim_feedforward=16, dropout=0.0, batch_first=True)
    ref = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=True).double()
    assert ref.use_nested_tensor
    ours = copy.deepcopy(ref)
    assert _swap(ours) == 2
    x, pad = torch.randn(3, 5, E, dtype=torch.float64), torch.tensor([[False] * 5, [False] * 3 + [True] * 2,
                                                                      [False] * 4 + [True]])
    want, _ = _run(ref, mode, x, src_key_padding_mask=pad)
    got, specs = _run(ours, mode, x, src_key_padding_mask=pad)
    assert len(specs) == 2
    torch.testing.assert_close(got[~pad], want[~pad])
    if mode in ("eval_no_grad", "inference_mode"):  # the nested path: padded rows come back as 0
        assert torch.all(got[pad] == 0) and torch.all(want[pad] == 0)
    else:
        torch.testing.assert_close(got, want)


def test_encoder_built_around_the_drop_in_keeps_its_forward():
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(E, H, dim_feedforward=16, dropout=0.0, batch_first=True)
    ref = torch.nn.TransformerEncoder(copy.deepcopy(layer), 2, enable_nested_tensor=False)
    _swap(layer)
    with pytest.warns(UserWarning, match="enable_nested_tensor is True, but self.use_nested_tensor is False"):
        ours = torch.nn.TransformerEncoder(layer, 2)
    ours.load_state_dict(ref.state_dict())
    x, pad = torch.randn(2, 5, E), _padding(2, 5)
    want, _ = _run(ref, "eval_no_grad", x, src_key_padding_mask=pad)
    got, specs = _run(ours, "eval_no_grad", x, src_key_padding_mask=pad)
    assert len(specs) == 2
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", list(MODES))
def test_transformer_matches_torch(mode):
    ref, ours = _pair(lambda: torch.nn.Transformer(E, H, num_encoder_layers=2, num_decoder_layers=2,
                                                   dim_feedforward=16, dropout=0.0, batch_first=True))
    src, tgt = torch.randn(2, 6, E, dtype=torch.float64), torch.randn(2, 4, E, dtype=torch.float64)
    pad = _padding(2, 6)
    kw = {
        "tgt_mask": torch.nn.Transformer.generate_square_subsequent_mask(4, dtype=torch.float64),
        "tgt_is_causal": True,
        "src_key_padding_mask": pad,
        "memory_key_padding_mask": pad,
    }
    want, _ = _run(ref, mode, src, tgt, **kw)
    got, specs = _run(ours, mode, src, tgt, **kw)
    assert len(specs) == 2 + 2 * 2  # every attention of the 2 + 2 layers ran on attnkit
    torch.testing.assert_close(got, want)
    if mode == "train":
        want.square().sum().backward()
        got.square().sum().backward()
        for (n, p), (_, r) in zip(ours.named_parameters(), ref.named_parameters()):
            torch.testing.assert_close(p.grad, r.grad, msg=n)


def test_merge_masks_is_torchs():
    ref = torch.nn.MultiheadAttention(E, H, batch_first=True)
    ours = TorchMultiheadAttention(E, H, batch_first=True)
    q = torch.randn(3, 4, E)
    kpm = torch.zeros(3, 4).masked_fill(_padding(3, 4)[[0, 1, 1]], float("-inf"))
    am2 = torch.nn.Transformer.generate_square_subsequent_mask(4)
    am3 = torch.randn(3 * H, 4, 4)
    for am in (None, am2, am3):
        for k in (None, kpm):
            m_ours, t_ours = ours.merge_masks(am, k, q)
            m_ref, t_ref = ref.merge_masks(am, k, q)
            assert t_ours == t_ref
            if m_ref is None:
                assert m_ours is None
            else:
                torch.testing.assert_close(m_ours, m_ref)


def test_nested_query_needs_self_attention_without_masks():
    m = TorchMultiheadAttention(E, H, batch_first=True)
    x = torch.nested.nested_tensor([torch.randn(3, E), torch.randn(2, E)])
    with pytest.raises(ValueError, match="NestedTensor query is taken for self-attention only"):
        m(x, x, x, need_weights=True)
