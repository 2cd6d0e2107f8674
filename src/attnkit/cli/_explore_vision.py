"""What ``attnkit explore RUN_DIR`` shows of a run on an image task, as an :class:`ExplorerData`.

* ``ram``, the Recurrent Attention Model (Mnih et al. 2014, arXiv:1406.6247): the glimpse centres of
  ``model(x).locations``, the retina's patches ``ρ(x, l_t)`` at each of them (``model.retina``), and the
  class probabilities after each glimpse, ``softmax(W_c h_t)``: the classifier read at every core state
  ``h_t`` of the forward (kept by a hook on ``model.core``), trained there too when ``step_loss`` > 0 (the
  presets') and at the last one only otherwise; the page says which.
* ``cnn`` with ``spatial`` / ``cbam`` / ``se`` blocks (Woo et al. 2018, arXiv:1807.06521; Hu et al. 2018,
  arXiv:1709.01507): ``model(x, return_maps=True).maps``, each block's spatial map
  ``σ(conv([mean_c u; max_c u]))`` (B, 1, h, w) and channel weights ``σ(W_2 δ(W_1 GAP(u)))`` (B, C, 1, 1).

A model without attention (``cnn --attention none``, ``mlp``) is one error naming the fix.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import Tensor

from ..models.glimpse import location_to_pixels
from ..viz.explore import BlockMaps, ExplorerData, GlimpsePath, ImageAttention
from ._common import CliError

__all__ = ["image_explorer_data", "DEFAULT_IMAGES", "image_indices"]

#: how many test images the page shows when --images is not given
DEFAULT_IMAGES = 6
#: what the per-glimpse probabilities are (the page prints it beside them)
STEP_NOTE = "the classifier read at every glimpse; it is trained at the last"
STEP_NOTE_TRAINED = "the classifier read at every glimpse; it is trained at every one (step_loss)"


def image_indices(text: Optional[str], n: int) -> list[int]:
    """``--images "0,5,7"`` -> test image indices, each checked against the split's ``n`` images."""
    if text is None:
        return list(range(min(DEFAULT_IMAGES, n)))
    try:
        raw = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise CliError(f"--images takes test image indices separated by ',' (e.g. --images 0,5,7), got {text!r}") \
            from None
    if not raw:
        raise CliError("--images is empty; give test image indices such as --images 0,5,7")
    bad = [i for i in raw if not 0 <= i < n]
    if bad:
        raise CliError(f"--images {text}: the test split has {n} images (0..{n - 1}); "
                       f"{', '.join(map(str, bad))} do not exist")
    return raw


def _ram_glimpses(model: Any, x: Tensor) -> tuple[Tensor, GlimpsePath]:
    """(logits (B, K), the glimpse path) of one forward, with the core states kept by a hook.

    The probabilities after each glimpse are shown only when the classifier applied to the last kept
    state gives the forward's own logits (a model whose core or classifier works otherwise gets none)."""
    states: list[Tensor] = []

    def keep(_m: Any, _inp: Any, out: Any) -> None:
        states.append((out[0] if isinstance(out, tuple) else out).detach())  # h_t (B, D); an LSTM gives (h, c)

    core, classifier = getattr(model, "core", None), getattr(model, "classifier", None)
    handle = core.register_forward_hook(keep) if isinstance(core, torch.nn.Module) else None
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        if handle is not None:
            handle.remove()
    locs = out.locations  # (B, T, 2) in [-1, 1]
    T = locs.shape[1]
    with torch.no_grad():
        pyramid = model.retina.pyramid(x)  # once for the T glimpses, as the model's forward does
        patches = torch.stack([model.retina.sample(pyramid, locs[:, t]) for t in range(T)], 1)  # (B, T, k, C, p, p)
        probs = None
        if len(states) == T and isinstance(classifier, torch.nn.Module):
            logits = torch.stack([classifier(h) for h in states], 1)  # (B, T, K)
            if torch.allclose(logits[:, -1], out.logits, atol=1e-5):  # the hook saw the forward's own states
                probs = logits.float().softmax(-1).cpu()
    centres = location_to_pixels(locs.float().cpu(), model.config.image_size)  # (B, T, 2) pixels (x, y)
    return out.logits, GlimpsePath(centres, list(model.retina.sizes), patches=patches.float().cpu(),
                                   probabilities=probs, probability_note=_step_note(model) if probs is not None else "")


def _step_note(model: Any) -> str:
    """What the probabilities after each glimpse are: trained there (``step_loss`` > 0) or only read there."""
    return STEP_NOTE_TRAINED if getattr(model.config, "step_loss", 0) > 0 else STEP_NOTE


def _cnn_blocks(model: Any, x: Tensor) -> tuple[Tensor, list[BlockMaps]]:
    """(logits (B, K), one BlockMaps per block with attention)."""
    with torch.no_grad():
        out = model(x, return_maps=True)
    blocks, per_stage = [], max(1, int(model.config.blocks))
    for i, maps in enumerate(out.maps or []):
        if not maps:
            continue
        spatial, channel = maps.get("spatial"), maps.get("channel")
        size = f", {spatial.shape[-2]}×{spatial.shape[-1]}" if spatial is not None else ""
        width = f", {channel.shape[1]} channels" if channel is not None else ""
        blocks.append(BlockMaps(f"block {i} (stage {i // per_stage}{width}{size})",
                                spatial=spatial.float().cpu() if spatial is not None else None,
                                channel=channel.float().cpu() if channel is not None else None))
    return out.logits, blocks


def image_explorer_data(task: Any, model: Any, indices: Sequence[int], *, model_name: str) -> ExplorerData:
    """The :class:`ExplorerData` of the test images ``indices`` through a loaded image run."""
    attention = getattr(model.config, "attention", None)
    if model_name == "cnn" and attention == "none" or model_name not in ("cnn", "ram"):
        what = "--attention none" if model_name == "cnn" else "no attention"
        raise CliError(f"this {model_name} run has {what}, so there is nothing to explore; train one with attention: "
                       f"attnkit train {task.name} --model cnn --attention spatial (or cbam, se), or --model ram")
    torch.manual_seed(0)
    model.eval()
    x_all, y_all = task.images("test")
    idx = list(indices)
    device = next(model.parameters()).device
    x, y = x_all[idx].to(device), y_all[idx]
    glimpses, blocks = None, []
    if model_name == "ram":
        logits, glimpses = _ram_glimpses(model, x)
        cfg = model.config
        what = f"{cfg.glimpses} glimpses, patches of {', '.join(map(str, model.retina.sizes))} px"
    else:
        logits, blocks = _cnn_blocks(model, x)
        what = f"CNN with {attention} attention"
    probs = logits.float().softmax(-1).cpu()  # (B, K)
    names = [str(n) for n in task.class_names]
    pred = probs.argmax(-1).tolist()
    items = [f"test #{i}: {names[int(t)]} → {names[p]}" for i, t, p in zip(idx, y.tolist(), pred)]
    return ExplorerData(images=ImageAttention(x.float().cpu().clamp(0, 1), probs, names, labels=y.cpu(),
                                              glimpses=glimpses, blocks=blocks),
                        title=f"{model_name} · {task.name}", kind=f"{model_name} run: {what}", items=items)
