"""The explorer in a real browser (headless Debian chromium through Playwright), every request blocked:
nothing is attempted but the file itself, nothing reaches the console as an error, every view puts
pixels on its canvas, and hovering a token, clicking a head, opening a model-view cell and choosing a
batch item each change what is drawn. The step-by-step panel shows the softmax and weighted sum of
a query worked by hand."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from attnkit.viz.explore import AttentionLayer, ExplorerData, explore

VIEWS = ("hv-canvas", "mx-canvas", "sal-canvas", "mv-canvas")


def _report(tmp_path: Path, *, N: int = 12, B: int = 2, layers: int = 2, H: int = 3, name: str = "r.html") -> Path:
    g = torch.Generator().manual_seed(0)
    toks = [[f"w{b}_{i}" for i in range(N - 3 * b)] for b in range(B)]
    out = []
    for li in range(layers):
        s = torch.randn(B, H, N, N, generator=g) * 3  # (B, H, N, N)
        s[1:, :, :, N - 3:] = float("-inf")  # item 1 is 3 tokens shorter: its padding gets no weight
        out.append(AttentionLayer(f"layer {li}", s.softmax(-1).nan_to_num(0.0), lse=s.logsumexp(-1),
                                  values=torch.randn(B, H, N, 4, generator=g)))
    data = ExplorerData(tokens={"tokens": toks}, layers=out, saliency=torch.randn(B, N, N, generator=g),
                        title="browser test", items=["first", "second"][:B])
    return explore(data).save(tmp_path / name)


@pytest.fixture
def report(tmp_path: Path, open_report):
    return open_report(_report(tmp_path))


def test_opens_offline_with_no_request_and_no_console_error(report) -> None:
    assert report.requests == [report.url], "nothing but the file itself may be requested"
    assert report.errors == []
    assert report.page.evaluate("window.attnkit.firstDrawMs") > 0


def test_every_view_draws(report) -> None:
    for canvas in VIEWS:
        assert report.canvas_ink(canvas) > 500, canvas
    steps = report.page.inner_text("#steps")
    assert "Step 1. The query" in steps and "Step 4. Add the weighted values" in steps
    mx, mv = report.canvas_image("mx-canvas"), report.canvas_image("mv-canvas")
    report.page.select_option("#scale", "sqrt")  # √α brightens the small weights of long inputs
    assert report.canvas_image("mx-canvas") != mx and report.canvas_image("mv-canvas") != mv


def test_hovering_a_token_isolates_its_lines(report) -> None:
    page = report.page
    before_img, before_ink = report.canvas_image("hv-canvas"), report.canvas_ink("hv-canvas")
    p = page.evaluate("window.attnkit.tokenPoint('q', 4)")
    page.mouse.move(p["x"], p["y"])
    assert page.evaluate("window.attnkit.state.query") == 4
    assert page.evaluate("window.attnkit.state.hover") == {"side": "q", "i": 4}
    assert report.canvas_image("hv-canvas") != before_img
    assert report.canvas_ink("hv-canvas") < before_ink  # one query's lines instead of every query's
    assert "w0_4" in page.inner_text("#steps")  # the step panel follows the hovered query
    k = page.evaluate("window.attnkit.tokenPoint('k', 2)")
    page.mouse.move(k["x"], k["y"])
    assert page.evaluate("window.attnkit.state.hover") == {"side": "k", "i": 2}
    assert report.errors == []


def test_clicking_a_head_changes_the_drawing(report) -> None:
    page = report.page
    hv, mx = report.canvas_image("hv-canvas"), report.canvas_image("mx-canvas")
    page.click(".head-chip[data-head='1']")
    assert page.evaluate("window.attnkit.state.heads") == [True, False, True]
    assert page.evaluate("window.attnkit.state.head") == 1
    assert report.canvas_image("hv-canvas") != hv  # head 1's lines are gone
    assert report.canvas_image("mx-canvas") != mx  # the matrix shows head 1
    # a model-view cell opens that layer and head
    mx = report.canvas_image("mx-canvas")
    pad, left, top = 8, 118, 22  # the model view's grid (explorer.js MV): cells of `size` px, 8 apart
    size = page.evaluate("Math.max(28, Math.min(72, Math.floor((document.getElementById('mv-canvas').width - 118) / 3)"
                         " - 8))")
    page.locator("#mv-canvas").click(position={"x": left + 2 * (size + pad) + size / 2,
                                              "y": top + 1 * (size + pad) + size / 2})
    assert page.evaluate("[window.attnkit.state.layer, window.attnkit.state.head]") == [1, 2]
    assert page.input_value("#layer") == "1" and page.input_value("#head") == "2"
    assert report.canvas_image("mx-canvas") != mx
    assert report.errors == []


def test_batch_selection(report) -> None:
    page = report.page
    mx, status = report.canvas_image("mx-canvas"), page.inner_text("#status")
    page.select_option("#item", "1")
    assert page.evaluate("window.attnkit.state.item") == 1
    assert report.canvas_image("mx-canvas") != mx
    assert status.startswith("12 tokens") and page.inner_text("#status").startswith("9 tokens")
    assert "w1_0" in page.inner_text("#steps")
    for canvas in VIEWS:
        assert report.canvas_ink(canvas) > 500, canvas
    assert report.errors == []


def test_step_panel_is_the_softmax_and_weighted_sum(tmp_path: Path, open_report) -> None:
    # scores [ln 2, 0, 0] -> α = [1/2, 1/4, 1/4], lse = ln 4; v = [[1, 0], [0, 1], [2, 2]] -> o = [1, 0.75]
    s = torch.tensor([[[[math.log(2), 0.0, 0.0]]]]).expand(1, 1, 3, 3)  # (B, H, L, S)
    v = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]]).expand(1, 1, 3, 2)  # (B, H, S, Ev)
    layer = AttentionLayer("only", s.softmax(-1), lse=s.logsumexp(-1), values=v.contiguous())
    path = explore(ExplorerData(tokens={"tokens": [["a", "b", "c"]]}, layers=[layer])).save(tmp_path / "s.html")
    text = open_report(path).page.inner_text("#steps")
    rows = {m.group(1): [float(x) for x in m.group(2).split()] for m in
            re.finditer(r"^([abc]) #\d\s+(-?[\d.]+\s+[\d.]+\s+[\d.]+)", text, re.M)}
    assert rows["a"] == pytest.approx([math.log(2), 1.0, 0.5], rel=0.03, abs=0.03)  # s = ln α + lse = ln 2
    assert rows["b"] == pytest.approx([0.0, 0.5, 0.25], rel=0.03, abs=0.03)
    o = re.search(r"o\[0:2\] = \[([-\d.]+), ([-\d.]+)\]", text)
    assert [float(o.group(1)), float(o.group(2))] == pytest.approx([1.0, 0.75], rel=0.03)


def test_2048_tokens_stays_interactive(tmp_path: Path, open_report) -> None:
    path = _report(tmp_path, N=2048, B=1, layers=1, H=2, name="big.html")
    opened = open_report(path)
    page = opened.page
    assert opened.errors == [] and opened.requests == [opened.url]
    for canvas in VIEWS:
        assert opened.canvas_ink(canvas) > 500, canvas
    draws = page.evaluate("window.attnkit.draws")
    p = page.evaluate("window.attnkit.tokenPoint('q', 5)")
    page.mouse.move(p["x"], p["y"])
    assert page.evaluate("window.attnkit.state.query") == 5
    page.select_option("#head", "1")
    assert page.evaluate("window.attnkit.draws") > draws


def test_a_top_k_report_draws_and_says_what_it_left_out(tmp_path: Path, open_report) -> None:
    g = torch.Generator().manual_seed(1)
    w = (torch.randn(1, 2, 30, 30, generator=g) * 3).softmax(-1)  # (B, H, L, S)
    data = ExplorerData(tokens={"tokens": [[f"t{i}" for i in range(30)]]}, layers=[AttentionLayer("l", w)])
    opened = open_report(explore(data, top_k=4).save(tmp_path / "k.html"))
    for canvas in ("hv-canvas", "mx-canvas", "mv-canvas"):
        assert opened.canvas_ink(canvas) > 500, canvas
    assert "26 not among the 4 this report keeps per row" in opened.page.inner_text("#steps")
    assert opened.page.inner_text("#sal-controls") == "this report holds no saliency"
    kept = opened.page.evaluate("Array.from(window.attnkit.row(window.attnkit.data.layers[0], 0, 1, 7))")
    assert sum(x > 0 for x in kept) == 4
    want = w[0, 1, 7]
    assert [i for i, x in enumerate(kept) if x > 0] == sorted(want.topk(4).indices.tolist())
    assert opened.errors == []
