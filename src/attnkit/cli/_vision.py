"""``attnkit predict RUN_DIR [INDEX ...] [--plot out.png]`` for a run on an image task.

The inputs are test images, named by their index in the test split (default: the first six).
Each is classified and printed with its class and, for the Recurrent Attention Model, where every
glimpse looked. ``--plot`` draws what the model attended to: the glimpse path (RAM), the spatial
attention map over the image (CNN with ``spatial`` or ``cbam``) and the channel weights per class
(CNN with ``se`` or ``cbam``; CBAM's channel attention).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._common import CliError

__all__ = ["predict_images", "DEFAULT_IMAGES"]

#: how many test images predict shows when no index is given
DEFAULT_IMAGES = 6


def _indices(texts: list[str], n: int) -> list[int]:
    if not texts:
        return list(range(min(DEFAULT_IMAGES, n)))
    out = []
    for t in texts:
        try:
            i = int(t)
        except ValueError:
            raise CliError(f"an image task's inputs are test image indices (0..{n - 1}), got {t!r}") from None
        if not 0 <= i < n:
            raise CliError(f"test image index {i} is out of range; the test split has {n} images (0..{n - 1})")
        out.append(i)
    return out


def _channel_weights_per_class(model: Any, x: Any, y: Any, num_classes: int) -> Any:
    """(classes, channels): the mean channel weights of the last block over the images of each class."""
    import torch

    sums = None
    for i in range(0, x.shape[0], 500):
        maps = model(x[i:i + 500], return_maps=True).maps[-1]
        w = maps["channel"].flatten(1)  # (B, C)
        if sums is None:
            sums = torch.zeros(num_classes, w.shape[1])
        sums.index_add_(0, y[i:i + 500], w.cpu())
    counts = torch.bincount(y, minlength=num_classes).clamp(min=1).unsqueeze(1)
    return sums / counts  # (K, C)


def predict_images(args: argparse.Namespace, task: Any, model: Any) -> int:
    """The image branch of ``attnkit predict`` (see the module docstring)."""
    import torch

    from ..models.glimpse import location_to_pixels
    from ..train import model_name
    from ..viz import plot_image_attention

    x_all, y_all = task.images("test")
    idx = _indices(list(args.text), x_all.shape[0])
    device = next(model.parameters()).device
    x, y = x_all[idx].to(device), y_all[idx]
    name = model_name(model)
    cfg = model.config
    with torch.no_grad():
        if name == "cnn" and cfg.attention != "none":
            out = model(x, return_maps=True)
        else:
            out = model(x)
        prob = out.logits.softmax(-1).cpu()  # (N, K)
    pred = prob.argmax(-1)
    centres = None
    if name == "ram":
        centres = location_to_pixels(out.locations.cpu(), cfg.image_size)  # (N, T, 2)
    for k, i in enumerate(idx):
        item = {"index": i, "label": task.class_names[int(y[k])], "predicted": task.class_names[int(pred[k])],
                "probability": round(float(prob[k, pred[k]]), 4)}
        if centres is not None:
            item["glimpses"] = [[round(v, 2) for v in c] for c in centres[k].tolist()]
        if args.json:
            print(json.dumps(item))
            continue
        mark = "right" if item["label"] == item["predicted"] else "WRONG"
        line = (f"test image {i}: class {item['label']} -> predicted {item['predicted']} "
                f"(p={item['probability']:.2f}, {mark})")
        if centres is not None:
            line += "; glimpses at (x, y) " + " ".join(f"({a:.1f}, {b:.1f})" for a, b in centres[k].tolist())
        print(line)
    if not args.plot:
        return 0
    titles = [f"#{i}: {task.class_names[int(y[k])]} → {task.class_names[int(pred[k])]}" for k, i in enumerate(idx)]
    kw: dict[str, Any] = {}
    if name == "ram":
        kw["glimpses"] = (centres, model.retina.sizes)
        what = f"{cfg.glimpses} glimpses, patches of {', '.join(map(str, model.retina.sizes))} px"
        if cfg.policy == "random":
            what += ", random locations"
    elif name == "cnn" and cfg.attention != "none":
        first = out.maps[0]
        if "spatial" in first:
            kw["spatial"] = first["spatial"].cpu()
        if "channel" in out.maps[-1]:
            with torch.no_grad():
                w = _channel_weights_per_class(model, x_all.to(device), y_all, task.num_classes)
            kw["channel"] = (w, task.class_names)
        what = f"CNN with {cfg.attention} attention" + (" (spatial map of the first block)" if "spatial" in kw else "")
    else:
        raise CliError(f"--plot draws attention; this run's {name} model has none to draw "
                       f"({'attention=none' if name == 'cnn' else 'no attention'}); train --model ram or "
                       "--model cnn --attention se|spatial|cbam")
    path = plot_image_attention(args.plot, x.cpu(), titles=titles, suptitle=f"{task.name}: {what}", **kw)
    if not args.json:
        print(f"attention picture saved to {path}")
    return 0
