"""viz.explore: the one-byte log code worked by hand, bertviz's JSON size counted exactly, the page
self-contained with its data decodable, top-k, and errors that name the argument and the fix."""

from __future__ import annotations

import base64
import json
import math
import re
import sys

import numpy as np
import pytest
import torch

from attnkit.viz.explore import (
    LOG_RANGE,
    AttentionLayer,
    Explorer,
    ExplorerData,
    bertviz_json_bytes,
    decode_weights,
    encode_weights,
    explore,
)


def _data(B: int = 2, H: int = 3, N: int = 6, *, values: bool = True, saliency: bool = True) -> ExplorerData:
    g = torch.Generator().manual_seed(0)
    s = torch.randn(B, H, N, N, generator=g) * 2  # (B, H, N, N)
    toks = [[f"t{i}" for i in range(N)], [f"u{i}" for i in range(N - 2)]][:B]
    layer = AttentionLayer("layer 0", s.softmax(-1), lse=s.logsumexp(-1),
                           values=torch.randn(B, H, N, 4, generator=g) if values else None)
    return ExplorerData(tokens={"tokens": toks}, layers=[layer],
                        saliency=torch.randn(B, N, N, generator=g) if saliency else None, title="t")


def _payload(page: Explorer) -> dict:
    m = re.search(r'<script type="application/json" id="attnkit-data">(.*?)</script>', page.html, re.S)
    return json.loads(m.group(1).replace("<\\/", "</"))


def test_log_code_by_hand() -> None:
    # c = round(255 + 254 ln(w) / 14): w = 1 -> 255, e^-7 -> 128, e^-14 -> 1, below e^-14 -> 0
    w = torch.tensor([1.0, math.exp(-7), math.exp(-14), 1e-7, 0.0])
    assert encode_weights(w).tolist() == [255, 128, 1, 0, 0]
    assert decode_weights(np.array([255, 128, 1, 0], dtype=np.uint8)).tolist() == pytest.approx(
        [1.0, math.exp(-7), math.exp(-14), 0.0], rel=1e-6)
    # every weight above the floor comes back within half a step: exp(K / 508) - 1 = 2.8 %
    x = torch.rand(10_000, dtype=torch.float64).pow(8).clamp_min(math.exp(-LOG_RANGE))
    back = decode_weights(encode_weights(x))
    assert np.max(np.abs(back / x.numpy() - 1)) <= math.exp(LOG_RANGE / 508) - 1 + 1e-6


def test_bertviz_size_is_the_length_of_its_json() -> None:
    # bertviz's head_view: json.dumps({"attention": {"all": {"attn": attn.tolist(), ...}}, "default_filter": "all"})
    # with attn the (layers, H, N, N) stack of the layers' (1, H, N, N) tensors
    layers = [torch.rand(1, 2, 3, 3) for _ in range(3)]
    toks = ["a", "b", "c"]
    attn = torch.stack([w[0] for w in layers])  # (layers, H, N, N)
    ref = json.dumps({"attention": {"all": {"attn": attn.tolist(), "left_text": toks, "right_text": toks}},
                      "default_filter": "all"})
    assert bertviz_json_bytes(layers, toks) == len(ref)
    assert bertviz_json_bytes(attn, toks) == len(ref)


def test_page_is_self_contained_and_its_data_decodes() -> None:
    data = _data()
    page = explore(data)
    html = page.html
    assert html.startswith("<!DOCTYPE html>") and "/*ATTNKIT_" not in html
    assert not re.search(r"https?://", html), "no address of any kind in the page"
    assert not re.search(r"<(script|img|iframe|link)[^>]*\s(src|href)=\"(?!data:)", html)
    assert "default-src 'none'" in html  # the page's own policy forbids every request
    p = _payload(page)
    (layer,) = p["layers"]
    assert (layer["B"], layer["H"], layer["L"], layer["S"], layer["enc"]) == (2, 3, 6, 6, "dense")
    codes = np.frombuffer(base64.b64decode(layer["w"]), dtype=np.uint8).reshape(2, 3, 6, 6)
    w = data.layers[0].weights.numpy()
    np.testing.assert_allclose(decode_weights(codes), w, rtol=0.03, atol=math.exp(-LOG_RANGE))
    v = np.frombuffer(base64.b64decode(layer["values"]), dtype="<f2").reshape(2, 3, 6, 4)
    np.testing.assert_allclose(v, data.layers[0].values.numpy(), rtol=1e-3, atol=1e-3)
    lse = np.frombuffer(base64.b64decode(layer["lse"]), dtype="<f4").reshape(2, 3, 6)
    np.testing.assert_allclose(lse, data.layers[0].lse.numpy())
    assert p["tokens"]["tokens"][1] == ["u0", "u1", "u2", "u3"] and p["saliency"]["R"] == 6


def test_tokens_cannot_close_the_script() -> None:
    data = _data(B=1, values=False, saliency=False)
    data.tokens["tokens"][0][0] = "</script><script>alert(1)</script>"
    page = explore(data)
    assert page.html.count("</script>") == 2  # the data block's and the code block's, nothing injected
    assert _payload(page)["tokens"]["tokens"][0][0] == "</script><script>alert(1)</script>"


def test_top_k_keeps_the_k_largest_of_each_row() -> None:
    data = _data(values=False)
    layer = _payload(explore(data, top_k=2))["layers"][0]
    assert layer["enc"] == "topk" and layer["k"] == 2 and layer["idx_bytes"] == 2
    idx = np.frombuffer(base64.b64decode(layer["idx"]), dtype="<u2").reshape(2, 3, 6, 2)
    want = data.layers[0].weights.topk(2, dim=-1).indices.numpy()
    assert (idx == want).all()


def test_size_ten_times_below_bertviz() -> None:
    # 12 layers x 12 heads x 64 tokens: bertviz writes ~20 characters per weight, the explorer 4/3 of a byte
    N, toks = 64, [f"w{i}" for i in range(64)]
    layers = [AttentionLayer(f"layer {i}", torch.randn(1, 12, N, N).softmax(-1)) for i in range(12)]
    page = explore(ExplorerData(tokens={"tokens": [toks]}, layers=layers))
    assert bertviz_json_bytes([layer.weights for layer in layers], toks) >= 10 * len(page)


def test_repr_html_isolates_the_page_in_an_iframe() -> None:
    page = explore(_data(B=1))
    r = page._repr_html_()
    assert r.startswith("<iframe srcdoc=\"") and "<script" not in r  # escaped: the notebook never runs it directly


def test_save_writes_the_page(tmp_path) -> None:
    page = explore(_data(B=1))
    path = page.save(tmp_path / "sub" / "r.html")
    assert path.read_text(encoding="utf-8") == page.html
    with pytest.raises(IsADirectoryError, match="give a file name"):
        page.save(tmp_path)


@pytest.mark.parametrize("change, match", [
    (lambda d: setattr(d.layers[0], "weights", torch.rand(3, 6, 6)), r"weights must be a \(B, H, L, S\)"),
    (lambda d: setattr(d.layers[0], "query", "target"), r"names the sequence 'target'"),
    (lambda d: setattr(d.layers[0], "weights", d.layers[0].weights * 3), r"in \[0, 1\].*not scores"),
    (lambda d: setattr(d.layers[0], "heads", ["a"]), r"names 1 heads but the weights have H = 3"),
    (lambda d: d.tokens["tokens"][0].extend(["x", "y"]), r"item 0 has 8 query and 8 key tokens"),
    (lambda d: setattr(d, "saliency", torch.rand(2, 6)), r"saliency must be \(B, R, N\)"),
    (lambda d: setattr(d, "layers", []), r"data.layers is empty"),
    (lambda d: setattr(d.layers[0], "lse", torch.rand(2, 3)), r"lse must be \(B, H, L\)"),
])
def test_bad_data_names_the_field_and_the_fix(change, match) -> None:
    data = _data()
    change(data)
    with pytest.raises(ValueError, match=match):
        explore(data)


def test_a_page_too_big_for_a_browser_says_to_use_top_k(monkeypatch) -> None:
    ex = sys.modules["attnkit.viz.explore"]  # the module (attnkit.viz.explore is the function)
    monkeypatch.setattr(ex, "MAX_STORED", 200)  # 2 x 3 x 6 x 6 = 216 weights
    with pytest.raises(ValueError, match=r"would store 216 weights .* pass top_k=32 or fewer layers or heads"):
        explore(_data())
    assert explore(_data(), top_k=1)  # 2 x 3 x 6 rows x 1 kept x 3 bytes (2 of index, 1 of code) = 108


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="top_k must be a positive int"):
        explore(_data(), top_k=0)
    with pytest.raises(TypeError, match="data must be an ExplorerData"):
        explore({"tokens": []})
    data = _data(B=1, values=False, saliency=False)
    data.tokens["tokens"][0] = ["x"] * 5000
    with pytest.raises(ValueError, match="at most 4096"):
        explore(data)
