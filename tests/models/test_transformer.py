"""Transformer models: parity with torch's layers, KV-cache equivalence, sampling filters, heads, errors."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from attnkit.models import BERT, GPT, MODELS, Transformer, build_model
from attnkit.models.decoding import filter_logits, sample_next
from attnkit.models.layers import TransformerLayer

V = 23


def tiny_gpt(**kw) -> GPT:
    cfg = dict(block_size=24, num_layers=2, num_heads=2, dim=16)
    cfg.update(kw)
    return GPT(V, **cfg).double().eval()


# ---------------------------------------------------------------------------------------------
# parity with torch's own layers
# ---------------------------------------------------------------------------------------------
def _copy_mha(ours, theirs: nn.MultiheadAttention) -> None:
    q, k, v = theirs.in_proj_weight.chunk(3)
    qb, kb, vb = theirs.in_proj_bias.chunk(3)
    with torch.no_grad():
        for lin, w, b in ((ours.q_proj, q, qb), (ours.k_proj, k, kb), (ours.v_proj, v, vb)):
            lin.weight.copy_(w)
            lin.bias.copy_(b)
        ours.out_proj.weight.copy_(theirs.out_proj.weight)
        ours.out_proj.bias.copy_(theirs.out_proj.bias)


def _copy_ffn(ours: TransformerLayer, theirs) -> None:
    with torch.no_grad():
        ours.ffn.fc.weight.copy_(theirs.linear1.weight)
        ours.ffn.fc.bias.copy_(theirs.linear1.bias)
        ours.ffn.proj.weight.copy_(theirs.linear2.weight)
        ours.ffn.proj.bias.copy_(theirs.linear2.bias)


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_layer_matches_torch(norm_first: bool, activation: str) -> None:
    D, H = 16, 4
    ref = nn.TransformerEncoderLayer(D, H, dim_feedforward=32, dropout=0.0, activation=activation,
                                     batch_first=True, norm_first=norm_first).double().eval()
    ours = TransformerLayer(D, num_heads=H, ffn_dim=32, norm_first=norm_first, activation=activation).double().eval()
    _copy_mha(ours.self_attn, ref.self_attn)
    _copy_ffn(ours, ref)
    ours.norm1.load_state_dict(ref.norm1.state_dict())
    ours.norm3.load_state_dict(ref.norm2.state_dict())
    x = torch.randn(3, 7, D, dtype=torch.float64)
    real = torch.tensor([[True] * 7, [True] * 5 + [False] * 2, [True] * 2 + [False] * 5])
    got, _, _ = ours(x, key_allowed=real)
    want = ref(x, src_key_padding_mask=~real)
    torch.testing.assert_close(got[real], want[real], rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("norm_first", [True, False])
def test_decoder_layer_matches_torch(norm_first: bool) -> None:
    D, H = 16, 2
    ref = nn.TransformerDecoderLayer(D, H, dim_feedforward=24, dropout=0.0, batch_first=True,
                                     norm_first=norm_first).double().eval()
    ours = TransformerLayer(D, num_heads=H, ffn_dim=24, norm_first=norm_first, activation="relu",
                            cross_attention=True).double().eval()
    _copy_mha(ours.self_attn, ref.self_attn)
    _copy_mha(ours.cross_attn, ref.multihead_attn)
    _copy_ffn(ours, ref)
    for mine, theirs in ((ours.norm1, ref.norm1), (ours.norm2, ref.norm2), (ours.norm3, ref.norm3)):
        mine.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 5, D, dtype=torch.float64)
    mem = torch.randn(2, 6, D, dtype=torch.float64)
    mem_real = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    got, _, _ = ours(x, causal=True, memory=mem, memory_allowed=mem_real)
    causal = nn.Transformer.generate_square_subsequent_mask(5, dtype=torch.float64)
    want = ref(x, mem, tgt_mask=causal, memory_key_padding_mask=~mem_real)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)


def test_gpt_matches_a_plain_nanogpt_forward() -> None:
    """Our GPT with nanoGPT's weights gives nanoGPT's logits (the fused-QKV SDPA model written out here)."""
    torch.manual_seed(0)
    g = tiny_gpt()
    idx = torch.randint(0, V, (2, 9))
    D, H = 16, 2
    x = g.tok_emb(idx) + g.pos_emb.embedding.weight[:9]
    for layer in g.layers:
        a = layer.self_attn
        h = layer.norm1(x)
        qkv = torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight])  # nanoGPT's c_attn
        q, k, v = nn.functional.linear(h, qkv, torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias])).split(D, 2)
        q, k, v = (t.view(2, 9, H, D // H).transpose(1, 2) for t in (q, k, v))  # (B, H, T, E)
        y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + a.out_proj(y.transpose(1, 2).reshape(2, 9, D))
        x = x + layer.ffn.proj(nn.functional.gelu(layer.ffn.fc(layer.norm3(x))))
    want = nn.functional.linear(g.norm(x), g.tok_emb.weight)
    torch.testing.assert_close(g(idx).logits, want, rtol=1e-9, atol=1e-10)


# ---------------------------------------------------------------------------------------------
# causality, KV cache, generation
# ---------------------------------------------------------------------------------------------
POSITIONS = ["learned", "sinusoidal", "rope", "alibi"]


@pytest.mark.parametrize("positional", POSITIONS)
@pytest.mark.parametrize("score", ["scaled_dot", "additive", "cosine"])
def test_cached_decoding_equals_full_forward(positional: str, score: str) -> None:
    g = tiny_gpt(positional=positional, score=score, window=3 if score == "cosine" else None)
    idx = torch.randint(0, V, (2, 11))
    full = g(idx).logits
    cache = g.new_cache(2)
    steps = [g(idx[:, :4], cache=cache).logits]  # a 4-token prefill, then one token at a time
    for t in range(4, 11):
        steps.append(g(idx[:, t : t + 1], cache=cache).logits)
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-9, atol=1e-10)


def test_gpt_is_causal_and_bert_is_not() -> None:
    idx = torch.randint(0, V, (1, 8))
    changed = idx.clone()
    changed[0, 6] = (idx[0, 6] + 1) % V
    g = tiny_gpt()
    a, b = g(idx).logits, g(changed).logits
    torch.testing.assert_close(a[:, :6], b[:, :6])
    assert not torch.allclose(a[:, 6:], b[:, 6:])
    bert = BERT(V, block_size=16, num_layers=2, num_heads=2, dim=16, dropout=0.0).double().eval()
    assert not torch.allclose(bert(idx).logits[:, :6], bert(changed).logits[:, :6])


def test_attention_weights_of_every_layer_and_head() -> None:
    g = tiny_gpt(num_layers=3)
    w = g.attention_maps(torch.randint(0, V, (2, 6)))
    assert len(w) == 3 and all(t.shape == (2, 2, 6, 6) for t in w)
    for t in w:
        torch.testing.assert_close(t.sum(-1), torch.ones(2, 2, 6, dtype=t.dtype))
        assert torch.all(t.triu(1) == 0)  # causal: nothing above the diagonal


@pytest.mark.parametrize("positional", ["learned", "rope"])
def test_generate_cached_equals_uncached_past_the_block(positional: str) -> None:
    """Greedy and seeded sampling give the same tokens with and without the cache, also past block_size."""
    g = tiny_gpt(positional=positional)
    prompt = torch.randint(0, V, (2, 5))
    n = 40  # > block_size=24: the window slides
    a = g.generate(prompt, max_new_tokens=n, temperature=0.0)
    b = g.generate(prompt, max_new_tokens=n, temperature=0.0, use_cache=False)
    assert a.shape == (2, 45) and torch.equal(a, b) and torch.equal(a[:, :5], prompt)
    kw = dict(max_new_tokens=n, temperature=0.8, top_k=10, top_p=0.9)
    a = g.generate(prompt, generator=torch.Generator().manual_seed(3), **kw)
    b = g.generate(prompt, generator=torch.Generator().manual_seed(3), use_cache=False, **kw)
    assert torch.equal(a, b)


def test_greedy_generation_follows_argmax() -> None:
    g = tiny_gpt()
    out = g.generate([3, 4, 5], max_new_tokens=3, temperature=0)
    ids = torch.tensor([[3, 4, 5]])
    for _ in range(3):
        ids = torch.cat([ids, g(ids).logits[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(out, ids)


def test_filter_logits_by_hand() -> None:
    logits = torch.tensor([[3.0, 1.0, 2.0, 0.0]])
    inf = float("-inf")
    assert filter_logits(logits, top_k=2).tolist() == [[3.0, inf, 2.0, inf]]
    probs = torch.tensor([[0.05, 0.5, 0.15, 0.3]])
    # mass ranked above each token: 0.5 -> 0, 0.3 -> 0.5, 0.15 -> 0.8, 0.05 -> 0.95
    kept = filter_logits(probs.log(), top_p=0.8).isfinite().tolist()
    assert kept == [[False, True, False, True]]
    kept = filter_logits(probs.log(), top_p=0.81).isfinite().tolist()
    assert kept == [[False, True, True, True]]
    assert filter_logits(probs.log(), top_p=0.1).isfinite().tolist() == [[False, True, False, False]]
    # sampling after top_k=1 is argmax whatever the temperature
    assert sample_next(logits, temperature=5.0, top_k=1).tolist() == [0]
    assert sample_next(logits, temperature=0).tolist() == [0]


def test_sampling_follows_the_temperature_scaled_distribution() -> None:
    logits = torch.log(torch.tensor([[0.2, 0.8]])).expand(20000, 2)
    draws = sample_next(logits, temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert abs(draws.float().mean().item() - 0.8) < 0.015
    # T = 0.5 squares the odds: 0.8^2 / (0.8^2 + 0.2^2) = 0.941
    draws = sample_next(logits, temperature=0.5, generator=torch.Generator().manual_seed(0))
    assert abs(draws.float().mean().item() - 0.64 / 0.68) < 0.01


# ---------------------------------------------------------------------------------------------
# encoder-decoder
# ---------------------------------------------------------------------------------------------
def tiny_seq2seq(**kw) -> Transformer:
    cfg = dict(tgt_vocab_size=17, dim=16, num_heads=2, encoder_layers=2, decoder_layers=2, dropout=0.0)
    cfg.update(kw)
    return Transformer(13, **cfg).double().eval()


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("positional", ["sinusoidal", "rope"])
def test_seq2seq_cached_decoding_equals_teacher_forcing(norm_first: bool, positional: str) -> None:
    m = tiny_seq2seq(norm_first=norm_first, positional=positional)
    src = torch.randint(3, 13, (2, 6))
    lengths = torch.tensor([6, 4])
    tgt = torch.randint(3, 17, (2, 5))
    full = m(src, lengths, tgt).logits
    memory, mask, _ = m.encode(src, lengths)
    caches = m.new_caches(memory, 8)
    steps = [m.decode(tgt[:, t : t + 1], memory, mask, caches=caches)[0] for t in range(5)]
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-9, atol=1e-10)


def test_seq2seq_padding_does_not_change_the_output() -> None:
    m = tiny_seq2seq()
    src = torch.randint(3, 13, (1, 4))
    padded = torch.cat([src, torch.zeros(1, 3, dtype=torch.long)], 1)
    tgt = torch.randint(3, 17, (1, 3))
    a = m(src, torch.tensor([4]), tgt).logits
    b = m(padded, torch.tensor([4]), tgt).logits
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_seq2seq_generate_returns_tokens_and_alignments() -> None:
    m = tiny_seq2seq()
    src = torch.randint(3, 13, (3, 7))
    lengths = torch.tensor([7, 5, 2])
    for beam in (1, 3):
        out = m.generate(src, lengths, max_len=6, beam_size=beam)
        assert len(out) == 3
        for (toks, align), n in zip(out, lengths.tolist()):
            assert align.shape == (len(toks), n)
            assert all(3 <= t < 17 or t in (0, 1) for t in toks)
            if len(toks):
                torch.testing.assert_close(align.sum(-1), torch.ones(len(toks), dtype=align.dtype))


def test_beam_search_scores_at_least_greedy() -> None:
    """With length_penalty=0 the beam ranks by log p: its pick is never less likely than greedy's."""
    torch.manual_seed(1)
    m = tiny_seq2seq()
    src = torch.randint(3, 13, (4, 5))
    lengths = torch.full((4,), 5)

    def logp(b: int, toks: list[int]) -> float:
        tgt_in = torch.tensor([[1, *toks]])
        tgt_out = torch.tensor([[*toks, 2]])
        lp = m(src[b : b + 1], lengths[b : b + 1], tgt_in).logits.log_softmax(-1)
        return float(lp.gather(-1, tgt_out[..., None]).sum())

    greedy = m.generate(src, lengths, max_len=30)
    beam = m.generate(src, lengths, max_len=30, beam_size=4, length_penalty=0.0)
    for b in range(4):
        if len(greedy[b][0]) < 30 and len(beam[b][0]) < 30:  # both finished with EOS
            assert logp(b, beam[b][0]) >= logp(b, greedy[b][0]) - 1e-9


def test_transformer_learns_to_reverse() -> None:
    """A small Transformer reverses 4-symbol sequences after 80 steps (teacher-forced accuracy > 90%)."""
    torch.manual_seed(0)
    m = Transformer(10, tgt_vocab_size=10, dim=32, num_heads=4, encoder_layers=1, decoder_layers=1, dropout=0.0)
    opt = torch.optim.Adam(m.parameters(), lr=5e-3)

    def batch(n: int) -> SimpleNamespace:
        src = torch.randint(3, 10, (n, 4))
        tgt = src.flip(1)
        bos = torch.ones(n, 1, dtype=torch.long)
        eos = torch.full((n, 1), 2)
        return SimpleNamespace(src=src, src_lengths=torch.full((n,), 4), tgt_in=torch.cat([bos, tgt], 1),
                               tgt_out=torch.cat([tgt, eos], 1))

    for _ in range(80):
        loss, _ = m.loss(batch(32))
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    _, metrics = m.loss(batch(256))
    assert metrics["accuracy"] > 0.9
    b = batch(8)
    out = m.generate(b.src, b.src_lengths, max_len=6)
    assert sum(toks == b.src[i].flip(0).tolist() for i, (toks, _) in enumerate(out)) >= 6


# ---------------------------------------------------------------------------------------------
# BERT heads
# ---------------------------------------------------------------------------------------------
def test_bert_mlm_loss_counts_only_masked_positions() -> None:
    bert = BERT(V, block_size=16, num_layers=1, num_heads=2, dim=16, dropout=0.0).double().eval()
    x = torch.randint(4, V, (2, 8))
    y = torch.randint(4, V, (2, 8))
    tm = torch.zeros(2, 8, dtype=torch.bool)
    tm[0, 3] = tm[1, 5] = True
    loss, m = bert.loss(SimpleNamespace(x=x, y=y, target_mask=tm, label=None))
    lp = bert(x).logits.log_softmax(-1)
    want = -(lp[0, 3, y[0, 3]] + lp[1, 5, y[1, 5]]) / 2
    torch.testing.assert_close(loss, want)
    assert m["tokens"] == 2


def test_bert_classifier_ignores_padding() -> None:
    bert = BERT(V, block_size=16, num_layers=2, num_heads=2, dim=16, dropout=0.0, num_classes=3).double().eval()
    x = torch.randint(4, V, (1, 5))
    padded = torch.cat([x, torch.zeros(1, 4, dtype=torch.long)], 1)
    torch.testing.assert_close(bert(x).logits, bert(padded).logits, rtol=1e-9, atol=1e-10)
    loss, m = bert.loss(SimpleNamespace(x=x, label=torch.tensor([2])))
    torch.testing.assert_close(loss, -bert(x).logits.log_softmax(-1)[0, 2])


# ---------------------------------------------------------------------------------------------
# registry, config, errors
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", [tiny_gpt(), tiny_seq2seq(), BERT(V, dim=16, num_heads=2, num_classes=4)])
def test_config_rebuilds_the_model_and_state_dict_has_no_shared_tensors(model: nn.Module) -> None:
    assert MODELS[model.config["model"]] is type(model)
    twin = build_model(dict(model.config))
    sd = model.state_dict()
    twin.load_state_dict(sd)
    ptrs = [t.untyped_storage().data_ptr() for t in sd.values()]
    assert len(ptrs) == len(set(ptrs))  # safetensors refuses shared tensors


def test_bad_input_errors_name_the_fix() -> None:
    g = tiny_gpt()
    with pytest.raises(ValueError, match="block_size=24"):
        g(torch.zeros(1, 25, dtype=torch.long))
    with pytest.raises(ValueError, match="last 24 tokens"):
        g.generate(torch.zeros(30, dtype=torch.long), max_new_tokens=1)
    with pytest.raises(ValueError, match="outside 0..22"):
        g.generate([1, 99], max_new_tokens=1)
    with pytest.raises(ValueError, match="encoder-only.*--model gpt"):
        BERT(V, dim=16, num_heads=2).generate([1, 2], max_new_tokens=3)
    with pytest.raises(ValueError, match="num_heads=3 does not divide dim=16"):
        GPT(V, dim=16, num_heads=3)
    with pytest.raises(ValueError, match="positional must be one of"):
        GPT(V, dim=16, num_heads=2, positional="absolute")
    with pytest.raises(ValueError, match="score must be one of"):
        Transformer(9, tgt_vocab_size=9, dim=16, num_heads=2, score="attentive")
    with pytest.raises(ValueError, match="share_embeddings"):
        Transformer(9, tgt_vocab_size=10, dim=16, num_heads=2, share_embeddings=True)
    with pytest.raises(ValueError, match="temperature"):
        sample_next(torch.zeros(1, 3), temperature=-1.0)
    with pytest.raises(ValueError, match="top_p"):
        filter_logits(torch.zeros(1, 3), top_p=1.5)


def test_post_norm_gpt_and_every_score_train_one_step() -> None:
    for score in ("scaled_dot", "additive", "general", "cosine", "dot"):
        g = GPT(V, block_size=12, num_layers=1, num_heads=2, dim=8, norm_first=False, score=score)
        idx = torch.randint(0, V, (2, 12))
        loss, m = g.loss(SimpleNamespace(x=idx[:, :-1], y=idx[:, 1:]))
        loss.backward()
        assert math.isfinite(m["loss"]) and all(p.grad is not None for p in g.parameters() if p.requires_grad)


def test_suppressed_ids_are_never_generated() -> None:
    g = tiny_gpt()
    with torch.no_grad():
        g.tok_emb.weight[5] *= 50  # make id 5 overwhelmingly likely wherever it is allowed
    free = g.generate([1, 2], max_new_tokens=20, temperature=0)
    banned = g.generate([1, 2], max_new_tokens=20, temperature=1.0, suppress_ids=[0, 1, 2, 3, 5],
                        generator=torch.Generator().manual_seed(0))
    assert 5 in free[0, 2:].tolist()
    assert not set(banned[0, 2:].tolist()) & {0, 1, 2, 3, 5}


def test_cross_attention_maps_match_the_decoding_alignment() -> None:
    """Teacher-forcing the greedy output reproduces, head by head, the attention decoding used."""
    m = tiny_seq2seq(decoder_layers=3)
    src = torch.randint(3, 13, (1, 6))
    lengths = torch.tensor([5])
    (toks, align), = m.generate(src, lengths, max_len=7)
    maps = m.cross_attention_maps(src, lengths, toks)
    assert len(maps) == 3 and maps[-1].shape == (2, len(toks) + 1, 5)
    torch.testing.assert_close(maps[-1].mean(0)[: len(toks)], align.to(maps[-1].dtype), rtol=1e-7, atol=1e-9)


def test_gpt_training_loss_counts_every_position_without_a_reduction() -> None:
    """A training step reports B·T tokens from the shape; evaluation counts and adds the accuracy."""
    torch.manual_seed(0)
    model = GPT(5, block_size=8, num_layers=1, num_heads=2, dim=8)
    batch = SimpleNamespace(x=torch.randint(0, 5, (3, 4)), y=torch.randint(0, 5, (3, 4)))
    model.train()
    loss, m = model.loss(batch)
    assert m["tokens"] == 12 and "accuracy" not in m
    model.eval()
    loss_eval, m_eval = model.loss(batch)
    assert m_eval["tokens"] == 12 and 0.0 <= m_eval["accuracy"] <= 1.0
    torch.testing.assert_close(loss, loss_eval)
    ref = torch.nn.functional.cross_entropy(model(batch.x).logits.reshape(-1, 5), batch.y.reshape(-1))
    torch.testing.assert_close(loss, ref)
