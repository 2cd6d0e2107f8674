"""Seq2seq RNN: every decoder x every sequence mechanism of the registry, decoding, beam search, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from attnkit.data import get_task
from attnkit.data.vocab import BOS, EOS
from attnkit.models import MODELS, build_model, model_config_for_task
from attnkit.models.seq2seq import Seq2Seq
from attnkit.nn import list_mechanisms
from attnkit.presets import preset

V = 12


def tiny(**kw) -> Seq2Seq:
    cfg = dict(model="seq2seq", src_vocab_size=V, tgt_vocab_size=V, embed_dim=8, hidden_dim=16, dropout=0.0)
    cfg.update(kw)
    return build_model(cfg)


def batch(B=3, S=5, T=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, V, (B, S), generator=g)
    lengths = torch.tensor([S, S - 2, 1][:B])
    for i, n in enumerate(lengths.tolist()):
        src[i, n:] = 0
    tgt = torch.randint(4, V, (B, T), generator=g)
    tgt_in = torch.cat([torch.full((B, 1), BOS), tgt], 1)
    tgt_out = torch.cat([tgt, torch.full((B, 1), EOS)], 1)

    class B_:
        pass

    b = B_()
    b.src, b.src_lengths, b.tgt_in, b.tgt_out = src, lengths, tgt_in, tgt_out
    b.tgt_lengths = torch.full((B,), T + 1)
    return b


SEQUENCE = [n for n in list_mechanisms(kind="sequence") if n != "self-attention"]


@pytest.mark.parametrize("decoder", ["bahdanau", "luong"])
@pytest.mark.parametrize("attention", SEQUENCE)
def test_every_mechanism_plugs_into_both_decoders(attention, decoder):
    torch.manual_seed(0)
    m = tiny(attention=attention, decoder=decoder)
    b = batch()
    loss, metrics = m.loss(b)
    assert torch.isfinite(loss) and metrics["tokens"] == 15
    loss.backward()
    grads = [p.grad for p in m.parameters() if p.requires_grad]
    assert all(g is None or torch.isfinite(g).all() for g in grads)
    assert m.encoder.embed.weight.grad is not None and m.encoder.embed.weight.grad.abs().sum() > 0
    m.eval()
    out = m.generate(b.src, b.src_lengths, max_len=6)
    for (toks, align), n in zip(out, b.src_lengths.tolist()):
        assert len(toks) <= 6 and EOS not in toks
        assert align.shape[1] == n and align.shape[0] in (len(toks), len(toks) + 1)


def test_lstm_cell_and_config_round_trip():
    m = tiny(cell="lstm", decoder="luong", attention="luong-general")
    m2 = build_model(m.config)
    m2.load_state_dict(m.state_dict())
    b = batch()
    m.eval(), m2.eval()
    assert torch.equal(m(b.src, b.src_lengths, b.tgt_in)[0], m2(b.src, b.src_lengths, b.tgt_in)[0])
    assert MODELS["seq2seq"] is Seq2Seq


def test_padding_does_not_change_the_output():
    """A source padded further (more PAD columns) gives the same logits: the mask and packing hold."""
    m = tiny().eval()
    b = batch()
    padded = torch.cat([b.src, torch.zeros(3, 4, dtype=torch.long)], 1)
    a1, w1, _ = m(b.src, b.src_lengths, b.tgt_in, need_weights=True)
    a2, w2, _ = m(padded, b.src_lengths, b.tgt_in, need_weights=True)
    torch.testing.assert_close(a1, a2, rtol=1e-5, atol=1e-6)
    assert (w2[..., 5:] == 0).all()
    assert (w1[2, :, 1:] == 0).all()  # the third source has one real token
    torch.testing.assert_close(w1.sum(-1), torch.ones(3, 5))


def _seq_logprob(m: Seq2Seq, src, lengths, toks: list[int]) -> float:
    tgt_in = torch.tensor([[BOS, *toks]])
    logits, _, _ = m(src, lengths, tgt_in)
    lp = F.log_softmax(logits, -1)[0]
    return float(sum(lp[i, t] for i, t in enumerate([*toks, EOS])))


def test_greedy_alignment_matches_teacher_forcing():
    m = tiny().eval()
    b = batch(B=1, S=5)
    [(toks, align)] = m.generate(b.src, b.src_lengths, max_len=8)
    _, w, _ = m(b.src, b.src_lengths, torch.tensor([[BOS, *toks]]), need_weights=True)
    torch.testing.assert_close(align, w[0, : align.shape[0]], rtol=1e-5, atol=1e-6)


def test_beam_search_finds_at_least_the_greedy_score():
    torch.manual_seed(3)
    m = tiny(hidden_dim=32).eval()
    for seed in range(4):
        b = batch(B=1, S=5, seed=seed)
        [(g, _)] = m.generate(b.src, b.src_lengths, max_len=7, beam_size=1)
        [(k, align)] = m.generate(b.src, b.src_lengths, max_len=7, beam_size=6, length_penalty=0.0)
        if len(g) < 7:  # greedy finished; the beam ranks raw log p, so it cannot do worse
            assert _seq_logprob(m, b.src, b.src_lengths, k) >= _seq_logprob(m, b.src, b.src_lengths, g) - 1e-5
        rows = len(k) + 1 if len(k) < 7 else 7  # + the EOS step, unless it ran out of max_len
        assert align.shape == (rows, 5)
        torch.testing.assert_close(align.sum(-1), torch.ones(rows))
    # a batch decodes each row as if alone
    b = batch(B=3)
    many = m.generate(b.src, b.src_lengths, max_len=6, beam_size=3)
    for i in range(3):
        n = int(b.src_lengths[i])
        [one] = m.generate(b.src[i : i + 1, :n], b.src_lengths[i : i + 1], max_len=6, beam_size=3)
        assert many[i][0] == one[0]
        torch.testing.assert_close(many[i][1], one[1], rtol=1e-4, atol=1e-5)


def test_hard_attention_adds_a_reinforce_term():
    torch.manual_seed(0)
    m = tiny(attention="hard")
    loss, metrics = m.loss(batch())
    assert "reinforce" in metrics
    loss.backward()
    assert m.decoder.attention.parameters().__next__().grad is not None


def test_bad_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="valid decoders: bahdanau, luong"):
        tiny(decoder="transformer")
    with pytest.raises(ValueError, match="valid cells: gru, lstm"):
        tiny(cell="rnn")
    with pytest.raises(ValueError, match="unknown attention mechanism 'bahdanu'.*bahdanau"):
        tiny(attention="bahdanu")
    with pytest.raises(ValueError, match="unknown model 'seq2sq'; did you mean 'seq2seq'"):
        build_model({"model": "seq2sq"})
    with pytest.raises(ValueError, match="beam_size must be a positive int"):
        tiny().generate(torch.ones(1, 2, dtype=torch.long), torch.tensor([2]), max_len=3, beam_size=0)


def test_config_for_task_uses_the_vocabularies():
    t = get_task("reverse", train=100, valid=10, test=10)
    cfg = model_config_for_task("seq2seq", t, attention="luong-dot", hidden_dim=None)
    assert cfg["src_vocab_size"] == len(t.src_vocab) and cfg["attention"] == "luong-dot"
    assert "hidden_dim" not in cfg  # tuned sizes live in attnkit.presets, not in the task
    tuned = model_config_for_task("seq2seq", t, **preset("reverse", "seq2seq").model)
    assert tuned["hidden_dim"] == preset("reverse", "seq2seq").model["hidden_dim"]
