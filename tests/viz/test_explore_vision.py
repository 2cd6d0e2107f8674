"""Vision runs as explorer sources: ``attnkit explore RUN_DIR`` on small runs trained here with the real CLI
(a few steps, one thread) gives pages whose glimpses, patches, spatial maps and channel weights are the
model's own (parity with the model's outputs); the image payload's encoding worked by hand; a run without
attention and every bad input are one line naming the fix."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from attnkit.cli import main
from attnkit.cli._explore_vision import image_explorer_data
from attnkit.models.glimpse import location_to_pixels
from attnkit.train import load_run
from attnkit.viz.explore import AttentionLayer, BlockMaps, ExplorerData, GlimpsePath, ImageAttention, explore

pytest.importorskip("sklearn")

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CNN = ["--hidden-dim", "4", "--batch-size", "32", "--eval-every", "2", "--threads", "1"]
RAM = ["--task-option", "canvas=16", "--hidden-dim", "16", "--batch-size", "32", "--eval-every", "2", "--threads", "1"]


def _payload(path: Path | str) -> dict:
    m = re.search(r'id="attnkit-data">(.*?)</script>', Path(path).read_text(encoding="utf-8"), re.S)
    return json.loads(m.group(1).replace("<\\/", "</"))


def _u8(b64: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(b64), dtype=np.uint8)


def _f16(b64: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(b64), dtype="<f2").astype(np.float32)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp, out = tmp_path_factory.mktemp("explore-vision"), {}
    n = torch.get_num_threads()
    try:
        for name in ("spatial", "cbam", "se", "none"):
            out[name] = tmp / name
            assert main(["train", "digits", "--model", "cnn", "--attention", name, "--steps", "2", "--out",
                         str(out[name]), "--json", *CNN]) == 0
        out["mlp"] = tmp / "mlp"
        assert main(["train", "digits", "--model", "mlp", "--hidden-dim", "8", "--steps", "2", "--out",
                     str(out["mlp"]), "--json", "--batch-size", "32", "--eval-every", "2", "--threads", "1"]) == 0
        out["ram"] = tmp / "ram"
        assert main(["train", "translated-digits", "--model", "ram", "--steps", "2", "--out", str(out["ram"]),
                     "--json", *RAM]) == 0
    finally:
        torch.set_num_threads(n)
    return out


def _explore(run: Path, tmp_path: Path, capsys, *extra: str) -> tuple[dict, dict]:
    out = tmp_path / "r.html"
    capsys.readouterr()
    assert main(["explore", str(run), "-o", str(out), "--json", "--threads", "1", *extra]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1]), _payload(out)


@pytest.mark.parametrize("attention, spatial, channel", [("cbam", True, True), ("spatial", True, False),
                                                         ("se", False, True)])
def test_cnn_maps_are_the_models(runs, tmp_path, capsys, one_thread, attention, spatial, channel) -> None:
    summary, p = _explore(runs[attention], tmp_path, capsys, "--images", "4,0,9")
    assert summary["blocks"] == 2 and summary["items"] == 3 and summary["layers"] == 0
    assert p["layers"] == [] and p["tokens"] == {}
    im = p["images"]
    task, model, _ = load_run(runs[attention])
    x, y = task.images("test")
    x, y = x[[4, 0, 9]], y[[4, 0, 9]]
    with torch.no_grad():
        out = model(x, return_maps=True)
    assert (im["B"], im["C"], im["H"], im["W"]) == (3, 1, 8, 8) and im["labels"] == y.tolist()
    np.testing.assert_allclose(_u8(im["x"]).reshape(3, 1, 8, 8) / 255, x.numpy(), atol=0.5 / 255 + 1e-6)
    probs = _f16(im["probs"]).reshape(3, 10)
    np.testing.assert_allclose(probs, out.logits.softmax(-1).numpy(), atol=1e-3)
    pred = out.logits.argmax(-1).tolist()
    assert p["items"] == [f"test #{i}: {int(t)} → {q}" for i, t, q in zip([4, 0, 9], y.tolist(), pred)]
    for blk, maps in zip(im["blocks"], out.maps):
        assert blk["name"].startswith("block ")
        assert (blk["spatial"] is not None) == spatial and (blk["channel"] is not None) == channel
        if spatial:
            want = maps["spatial"][:, 0].numpy()  # (B, h, w)
            assert (blk["h"], blk["w"]) == want.shape[1:]
            np.testing.assert_allclose(_f16(blk["spatial"]).reshape(want.shape), want, atol=1e-3)
        if channel:
            want = maps["channel"][:, :, 0, 0].numpy()  # (B, C)
            assert blk["C"] == want.shape[1]
            np.testing.assert_allclose(_f16(blk["channel"]).reshape(want.shape), want, atol=1e-3)
    assert [b["h"] for b in im["blocks"]] == ([8, 4] if spatial else [0, 0])  # stage 1 halves the map


def test_ram_glimpses_patches_and_step_probabilities(runs, tmp_path, capsys, one_thread) -> None:
    summary, p = _explore(runs["ram"], tmp_path, capsys, "--images", "0,3")
    task, model, _ = load_run(runs["ram"])
    model.eval()
    cfg = model.config
    g = p["images"]["glimpses"]
    # the presets' fovea on translated digits: 1/8 of the 16x16 canvas, at the 4 scales that fit
    assert summary["glimpses"] == g["T"] == cfg.glimpses and g["sizes"] == model.retina.sizes == [2, 4, 8, 16]
    x = task.images("test")[0][[0, 3]]
    with torch.no_grad():
        out = model(x)
    centres = location_to_pixels(out.locations, 16)  # (B, T, 2)
    np.testing.assert_allclose(np.array(g["centres"]), centres.numpy(), atol=1e-3)
    assert g["centres"][0][0] == [7.5, 7.5]  # the first glimpse: the centre of the 16x16 canvas
    patches = _u8(g["patches"]).reshape(2, g["T"], len(g["sizes"]), 1, g["p"], g["p"]) / 255
    with torch.no_grad():
        want = model.retina(x, out.locations[:, 2])  # (B, k, C, p, p): the third glimpse
    np.testing.assert_allclose(patches[:, 2], want.numpy(), atol=0.5 / 255 + 1e-6)
    probs = _f16(g["probs"]).reshape(2, g["T"], 10)
    np.testing.assert_allclose(probs[:, -1], out.logits.softmax(-1).numpy(), atol=1e-3)  # the last is the output
    with torch.no_grad():  # the first by hand: one core step from a zero state at the centre
        h0 = torch.zeros(2, cfg.hidden_dim)
        h1, _ = model.core(model.glimpse(x, torch.zeros(2, 2)), (h0, h0.clone()))
        first = model.classifier(h1).softmax(-1)
    np.testing.assert_allclose(probs[:, 0], first.numpy(), atol=1e-3)
    assert cfg.step_loss == 1.0 and "trained at every one (step_loss)" in g["note"]  # the presets train every glimpse
    from attnkit.cli._explore_vision import _step_note

    assert "trained at the last" in _step_note(SimpleNamespace(config=SimpleNamespace(step_loss=0.0)))


def test_no_step_probabilities_when_the_classifier_does_not_give_the_output(runs, monkeypatch, one_thread) -> None:
    task, model, _ = load_run(runs["ram"])
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda x, **kw: forward(x, **kw)._replace(logits=forward(x, **kw).logits + 1))
    data = image_explorer_data(task, model, [0], model_name="ram")
    assert data.images.glimpses.probabilities is None and data.images.glimpses.patches is not None
    assert _payload_of(explore(data))["images"]["glimpses"]["probs"] is None  # the page says it holds none


@pytest.mark.parametrize("run, match", [
    ("none", r"this cnn run has --attention none, so there is nothing to explore; .*--attention spatial"),
    ("mlp", r"this mlp run has no attention, so there is nothing to explore; .*--model ram"),
])
def test_a_vision_run_without_attention_is_one_clear_error(runs, run, match, tmp_path, capsys) -> None:
    assert main(["explore", str(runs[run]), "-o", str(tmp_path / "r.html"), "--threads", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(match, err), err
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("extra, match", [
    (["--images", "0,400"], r"--images 0,400: the test split has 359 images \(0..358\); 400 do not exist"),
    (["--images", "a"], r"--images takes test image indices"),
    (["--text", "3"], r"--text is for token models; an image run shows test images: --images 0,5,7"),
    (["--layers", "0"], r"--layers is for token models"),
])
def test_bad_image_flags(runs, extra, match, tmp_path, capsys) -> None:
    assert main(["explore", str(runs["cbam"]), *extra, "-o", str(tmp_path / "r.html"), "--threads", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(match, err), err


def test_images_on_a_token_run_is_refused(tmp_path, capsys) -> None:
    run = FIXTURES / "run-361c5ec-seq2seq"
    assert main(["explore", str(run), "--images", "0", "-o", str(tmp_path / "r.html")]) == 2
    assert "--images chooses test images of an image run" in capsys.readouterr().err


# -- the payload by hand ----------------------------------------------------------------------------
def _images(B: int = 2) -> ImageAttention:
    x = torch.zeros(B, 1, 4, 4)
    x[0, 0, 1, 2] = 0.5  # one byte: round(255 · 0.5) = 128
    x[:, 0, 3, 3] = 1.0
    probs = torch.tensor([[0.25, 0.75], [1.0, 0.0]])[:B]
    spatial = torch.full((B, 1, 2, 2), 0.5)
    spatial[0, 0, 0, 1] = 0.875  # exact in float16
    return ImageAttention(x, probs, ["cat", "dog"], labels=torch.tensor([1, 0])[:B],
                          blocks=[BlockMaps("b0", spatial=spatial, channel=torch.tensor([[0.125, 1.0, 0.5]] * B))])


def test_image_payload_by_hand() -> None:
    p = _payload_of(explore(ExplorerData(images=_images(), items=["a", "b"])))
    im = p["images"]
    px = _u8(im["x"]).reshape(2, 1, 4, 4)
    assert px[0, 0, 1, 2] == 128 and px[1, 0, 3, 3] == 255 and px.sum() == 128 + 2 * 255
    assert _f16(im["probs"]).tolist() == [0.25, 0.75, 1.0, 0.0] and im["labels"] == [1, 0]
    (blk,) = im["blocks"]
    assert (blk["h"], blk["w"], blk["C"]) == (2, 2, 3)
    assert _f16(blk["spatial"]).tolist() == [0.5, 0.875, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    assert _f16(blk["channel"]).tolist() == [0.125, 1.0, 0.5] * 2
    assert im["glimpses"] is None and p["items"] == ["a", "b"] and p["layers"] == []


def test_glimpse_payload_by_hand() -> None:
    data = _images(B=1)
    data.blocks = []
    patches = torch.zeros(1, 2, 2, 1, 2, 2)  # (B, T, k, C, p, p)
    patches[0, 1, 0, 0, 0, 0] = 1.0
    data.glimpses = GlimpsePath(torch.tensor([[[1.5, 1.5], [0.25, 3.0]]]), [2, 4], patches=patches,
                                probabilities=torch.tensor([[[0.5, 0.5], [0.25, 0.75]]]), probability_note="n")
    g = _payload_of(explore(ExplorerData(images=data)))["images"]["glimpses"]
    assert (g["T"], g["k"], g["p"], g["sizes"], g["note"]) == (2, 2, 2, [2, 4], "n")
    assert g["centres"] == [[[1.5, 1.5], [0.25, 3.0]]]
    assert _u8(g["patches"]).tolist() == [0] * 8 + [255] + [0] * 7
    assert _f16(g["probs"]).tolist() == [0.5, 0.5, 0.25, 0.75]


def _payload_of(page) -> dict:
    m = re.search(r'id="attnkit-data">(.*?)</script>', page.html, re.S)
    return json.loads(m.group(1).replace("<\\/", "</"))


@pytest.mark.parametrize("change, match", [
    (lambda d: setattr(d, "images", d.images[:, 0]), r"images.images must be \(B, C, H, W\) .* unsqueeze\(1\)"),
    (lambda d: setattr(d, "images", d.images * 2), r"images.images must lie in \[0, 1\] \(scale the pixels"),
    (lambda d: setattr(d, "probabilities", torch.rand(2, 3)), r"images.probabilities must be a \(2, 2\) tensor"),
    (lambda d: setattr(d, "labels", torch.tensor([0, 2])), r"images.labels must be 2 class indices in 0..1"),
    (lambda d: setattr(d, "blocks", []), r"images holds no attention: give glimpses .* or blocks"),
    (lambda d: setattr(d.blocks[0], "spatial", torch.full((2, 2, 2), 3.0)),
     r"images.blocks\[0\] \('b0'\).spatial must lie in \[0, 1\] \(a sigmoid gate"),
    (lambda d: setattr(d.blocks[0], "channel", torch.rand(3, 3)), r"images.blocks\[0\] \('b0'\).channel must be"),
    (lambda d: setattr(d.blocks[0], "spatial", None) or setattr(d.blocks[0], "channel", None),
     r"holds neither a spatial map nor channel weights"),
    (lambda d: setattr(d, "glimpses", GlimpsePath(torch.zeros(2, 3), [2])), r"glimpses.centres must be a \(2, \*, 2\)"),
])
def test_bad_image_data_names_the_field_and_the_fix(change, match) -> None:
    data = _images()
    change(data)
    with pytest.raises(ValueError, match=match):
        explore(ExplorerData(images=data))


def test_images_beside_tokens_must_have_one_per_item() -> None:
    layer = AttentionLayer("l", torch.full((3, 1, 2, 2), 0.5))
    with pytest.raises(ValueError, match="images.images holds 2 images but the page has 3 items"):
        explore(ExplorerData(tokens={"tokens": [["a", "b"]] * 3}, layers=[layer], images=_images()))
    with pytest.raises(ValueError, match=r"data.layers is empty; .*images=ImageAttention"):
        explore(ExplorerData())
