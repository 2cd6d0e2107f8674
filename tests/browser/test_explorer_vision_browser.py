"""The explorer's vision views in a real browser (headless Debian chromium through Playwright), every request
blocked: a RAM page (glimpse path, step-by-step panel) and a CNN page (spatial maps, channel weights) request
nothing but the file, log no console error, put pixels on every canvas, and the step slider, the step
buttons, the item, block and colour-scale selections, a block thumbnail and a channel hover each change
what is drawn. The step panel's location is worked by hand (the centre of an 8x8 image is l = (0, 0))."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from attnkit.viz.explore import AttentionLayer, BlockMaps, ExplorerData, GlimpsePath, ImageAttention, explore

TOKEN_VIEWS = ("head-view", "steps-view", "matrix-view", "saliency-view", "model-view")


def _digits(B: int, side: int, g: torch.Generator) -> torch.Tensor:
    x = torch.zeros(B, 1, side, side)
    for b in range(B):  # a bright bar at a different place in each image
        x[b, 0, 1 + b: side - 1, 2 + b: 4 + b] = 1.0
    return (x + 0.1 * torch.rand(B, 1, side, side, generator=g)).clamp(0, 1)


def _ram_page(tmp_path: Path) -> Path:
    g = torch.Generator().manual_seed(0)
    B, T, k, p, side = 2, 4, 2, 2, 8
    centres = torch.tensor([[[3.5, 3.5], [2.0, 2.0], [5.0, 1.5], [1.0, 6.0]],
                            [[3.5, 3.5], [6.0, 6.0], [2.5, 5.0], [4.0, 1.0]]])  # (B, T, 2)
    probs = torch.randn(B, T, 3, generator=g).softmax(-1)  # (B, T, K)
    data = ImageAttention(_digits(B, side, g), probs[:, -1], ["a", "b", "c"], labels=torch.tensor([0, 2]),
                          glimpses=GlimpsePath(centres, [2, 4], patches=torch.rand(B, T, k, 1, p, p, generator=g),
                                               probabilities=probs, probability_note="hand-made"))
    return explore(ExplorerData(images=data, title="ram test", items=["first", "second"])).save(tmp_path / "ram.html")


def _cnn_page(tmp_path: Path) -> Path:
    g = torch.Generator().manual_seed(1)
    B = 2
    blocks = [BlockMaps("block 0", spatial=torch.rand(B, 1, 8, 8, generator=g),
                        channel=torch.rand(B, 6, 1, 1, generator=g)),
              BlockMaps("block 1", spatial=0.4 + 0.2 * torch.rand(B, 1, 4, 4, generator=g),
                        channel=torch.rand(B, 12, generator=g))]
    data = ImageAttention(_digits(B, 8, g), torch.tensor([[0.9, 0.1], [0.3, 0.7]]), ["zero", "one"],
                          labels=torch.tensor([0, 0]), blocks=blocks)
    return explore(ExplorerData(images=data, title="cnn test")).save(tmp_path / "cnn.html")


@pytest.fixture
def ram(tmp_path: Path, open_report):
    return open_report(_ram_page(tmp_path))


@pytest.fixture
def cnn(tmp_path: Path, open_report):
    return open_report(_cnn_page(tmp_path))


def _hidden(page, section: str) -> bool:
    return page.evaluate("id => document.getElementById(id).hidden", section)


def test_ram_page_opens_offline_and_draws(ram) -> None:
    page = ram.page
    assert ram.requests == [ram.url] and ram.errors == []
    assert all(_hidden(page, s) for s in TOKEN_VIEWS + ("spatial-view", "channel-view"))
    assert not _hidden(page, "glimpse-view") and not _hidden(page, "glimpse-steps-view")
    for canvas in ("gl-canvas", "gl-steps-canvas"):
        assert ram.canvas_ink(canvas) > 500, canvas
    assert "true a · predicted" in page.inner_text("#glimpse-view .verdict")
    assert page.inner_text("#gl-step-text") == "glimpse 4 of 4"  # opens at the last glimpse


def test_step_slider_and_buttons_change_the_drawing(ram) -> None:
    page = ram.page
    path, steps = ram.canvas_image("gl-canvas"), ram.canvas_image("gl-steps-canvas")
    page.fill("#gl-step", "1")  # the slider's input event
    assert page.evaluate("window.attnkit.vision.step") == 1
    assert ram.canvas_image("gl-canvas") != path and ram.canvas_image("gl-steps-canvas") != steps
    text = page.inner_text("#gl-steps")  # the centre of an 8x8 image: pixel 3.5, l = (2·3.5 + 1)/8 - 1 = 0
    assert "Glimpse 1 of 4" in text and "(x, y) = (3.5, 3.5) px" in text and "= (0.000, 0.000)" in text
    one = ram.canvas_image("gl-canvas")
    page.click("#gl-next")
    assert page.evaluate("window.attnkit.vision.step") == 2 and ram.canvas_image("gl-canvas") != one
    assert "(x, y) = (2.0, 2.0) px" in page.inner_text("#gl-steps")  # l = (2·2 + 1)/8 - 1 = -0.375
    assert "= (-0.375, -0.375)" in page.inner_text("#gl-steps")
    page.click("#gl-prev")
    assert page.evaluate("window.attnkit.vision.step") == 1 and ram.canvas_image("gl-canvas") == one
    page.click("#gl-prev")  # stays at the first
    assert page.evaluate("window.attnkit.vision.step") == 1
    page.fill("#gl-step", "4")
    full = ram.canvas_image("gl-canvas")
    page.uncheck("#gl-all")  # only the current glimpse
    assert ram.canvas_image("gl-canvas") != full and ram.canvas_ink("gl-canvas") > 500
    assert ram.errors == []


def test_ram_item_selection(ram) -> None:
    page = ram.page
    path = ram.canvas_image("gl-canvas")
    page.select_option("#item", "1")
    assert page.evaluate("window.attnkit.vision.item") == 1
    assert ram.canvas_image("gl-canvas") != path
    assert "true c · predicted" in page.inner_text("#glimpse-view .verdict")
    assert "(x, y) = (4.0, 1.0) px" in page.inner_text("#gl-steps")  # item 1's fourth glimpse
    assert ram.errors == []


def test_cnn_page_opens_offline_and_draws(cnn) -> None:
    page = cnn.page
    assert cnn.requests == [cnn.url] and cnn.errors == []
    assert all(_hidden(page, s) for s in TOKEN_VIEWS + ("glimpse-view", "glimpse-steps-view"))
    for canvas in ("sp-canvas", "ch-canvas"):
        assert cnn.canvas_ink(canvas) > 500, canvas
    assert "true zero · predicted zero (p = 0.900) ✓ right" in page.inner_text("#spatial-view .verdict")
    page.select_option("#item", "1")
    assert "✗ wrong" in page.inner_text("#channel-view .verdict")


def test_block_selection_and_colour_scale_change_the_drawing(cnn) -> None:
    page = cnn.page
    sp, ch = cnn.canvas_image("sp-canvas"), cnn.canvas_image("ch-canvas")
    page.select_option("#block", "1")
    assert page.evaluate("window.attnkit.vision.block") == 1
    assert cnn.canvas_image("sp-canvas") != sp and cnn.canvas_image("ch-canvas") != ch
    sp1 = cnn.canvas_image("sp-canvas")
    page.select_option("#vscale", "stretch")  # block 1's map spans 0.4..0.6: stretched, its colours change
    assert cnn.canvas_image("sp-canvas") != sp1
    p = page.evaluate("window.attnkit.vision.thumbPoint(0)")  # the thumbnail of block 0 opens it
    page.mouse.click(p["x"], p["y"])
    assert page.evaluate("window.attnkit.vision.block") == 0 and page.input_value("#block") == "0"
    assert cnn.errors == []


def test_hovering_a_channel_names_its_weight(cnn) -> None:
    page = cnn.page
    ch = cnn.canvas_image("ch-canvas")
    p = page.evaluate("window.attnkit.vision.channelPoint(3)")
    page.mouse.move(p["x"], p["y"])
    assert page.evaluate("window.attnkit.vision.hover") == 3
    want = page.evaluate("window.attnkit.data.images.blocks[0]._c[3]")
    assert f"channel 3: weight {want:.4f}" in page.inner_text("#status")
    assert cnn.canvas_image("ch-canvas") != ch  # the hovered bar is marked
    assert cnn.errors == []


def test_arrow_keys_step_through_the_glimpses(ram) -> None:
    page = ram.page
    page.locator("#gl-steps").click()  # focus on the page, not on a control
    page.keyboard.press("ArrowLeft")
    assert page.evaluate("window.attnkit.vision.step") == 3
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")  # stays at the last
    assert page.evaluate("window.attnkit.vision.step") == 4
    assert ram.errors == []


def test_a_page_with_tokens_and_images_draws_both(tmp_path: Path, open_report) -> None:
    g = torch.Generator().manual_seed(2)
    w = torch.randn(1, 2, 5, 5, generator=g).softmax(-1)  # (B, H, L, S)
    images = ImageAttention(_digits(1, 8, g), torch.tensor([[0.2, 0.8]]), ["no", "yes"],
                            blocks=[BlockMaps("block 0", spatial=torch.rand(1, 8, 8, generator=g))])
    data = ExplorerData(tokens={"tokens": [list("abcde")]}, layers=[AttentionLayer("layer 0", w)], images=images)
    opened = open_report(explore(data).save(tmp_path / "both.html"))
    assert opened.requests == [opened.url] and opened.errors == []
    for canvas in ("hv-canvas", "mx-canvas", "mv-canvas", "sp-canvas"):
        assert opened.canvas_ink(canvas) > 500, canvas
    assert not _hidden(opened.page, "head-view") and not _hidden(opened.page, "spatial-view")
    assert _hidden(opened.page, "channel-view") and _hidden(opened.page, "glimpse-view")
    assert "predicted yes (p = 0.800)" in opened.page.inner_text("#spatial-view .verdict")  # no labels: no verdict
