"""What the explorer shows of a vision model: glimpse paths, spatial attention maps, channel weights.

* Glimpses of the Recurrent Attention Model (Mnih, Heess, Graves & Kavukcuoglu 2014, arXiv:1406.6247):
  at step t the retina takes k square patches centred on ``l_t``, of sides ``p · 2^i``, each averaged
  down to p x p, ``ρ(x, l_t)``; the page draws each glimpse's patches as boxes numbered in order, the
  patches themselves, and the class probabilities ``softmax(W_c h_t)`` after each glimpse.
* Spatial attention of CBAM (Woo et al. 2018, arXiv:1807.06521): ``M_s = σ(conv([mean_c u; max_c u]))``,
  one weight in [0, 1] per position of a block's (h, w) feature map, drawn over the image.
* Channel attention, squeeze-and-excitation (Hu et al. 2018, arXiv:1709.01507) and CBAM's channel part:
  ``M_c = σ(W_2 δ(W_1 GAP(u)))``, one weight in [0, 1] per channel, drawn as bars.

Storage: images and patches one byte per pixel (``round(255 · x)``), maps, channel weights and
probabilities float16, all base64; glimpse centres as JSON numbers (a few per image).

    ImageAttention(images (B, C, H, W), probabilities (B, K), class_names, labels=(B,),
                   blocks=[BlockMaps("block 0", spatial=(B, h, w), channel=(B, C))])
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["ImageAttention", "GlimpsePath", "BlockMaps", "image_payload"]

#: the largest image side the page draws (its canvas scales the image to ~400 px)
MAX_IMAGE_SIDE = 512


@dataclasses.dataclass(eq=False)
class GlimpsePath:
    """Where the Recurrent Attention Model looked, for every image of the batch.

    ``centres`` (B, T, 2): each glimpse's centre in pixels (x, y), 0 = the middle of the first pixel
    (``models.glimpse.location_to_pixels``). ``sizes``: the side in pixels of the patch at each of the k
    scales. ``patches`` (B, T, k, C, p, p): what the retina returned (each scale averaged down to p x p).
    ``probabilities`` (B, T, K): the class probabilities after each glimpse; ``probability_note`` says
    what they are (e.g. the classifier read at every step although it is trained at the last).
    """

    centres: Tensor  # (B, T, 2)
    sizes: Sequence[int]
    patches: Optional[Tensor] = None  # (B, T, k, C, p, p)
    probabilities: Optional[Tensor] = None  # (B, T, K)
    probability_note: str = ""


@dataclasses.dataclass(eq=False)
class BlockMaps:
    """The attention of one block of a CNN: ``spatial`` (B, h, w) or (B, 1, h, w) and ``channel`` (B, C)
    or (B, C, 1, 1), each a gate in [0, 1]; either may be None (SE has no spatial map, spatial attention
    no channel weights)."""

    name: str
    spatial: Optional[Tensor] = None  # (B, h, w)
    channel: Optional[Tensor] = None  # (B, C)


@dataclasses.dataclass(eq=False)
class ImageAttention:
    """The images a vision model saw and what it attended to.

    ``images`` (B, C, H, W) in [0, 1], C = 1 (grey) or 3 (RGB); ``probabilities`` (B, K): the model's
    class probabilities; ``class_names`` the K names; ``labels`` (B,): the true classes (None when
    unknown); ``glimpses``: a RAM's path; ``blocks``: a CNN's attention per block.
    """

    images: Tensor  # (B, C, H, W)
    probabilities: Tensor  # (B, K)
    class_names: Sequence[str]
    labels: Optional[Tensor] = None  # (B,)
    glimpses: Optional[GlimpsePath] = None
    blocks: list[BlockMaps] = dataclasses.field(default_factory=list)

    @property
    def batch_size(self) -> int:
        return int(self.images.shape[0]) if isinstance(self.images, Tensor) and self.images.dim() >= 1 else 0


def b64(a: np.ndarray) -> str:
    """``a``'s bytes, little-endian, as base64 text: how every array goes into an explorer page."""
    return base64.b64encode(np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()).decode("ascii")


def _bytes01(x: Tensor) -> str:
    """Values in [0, 1] -> one byte each, ``round(255 · x)``."""
    return b64(torch.round(x.clamp(0, 1) * 255).to(torch.uint8).numpy())


def _half(x: Tensor) -> str:
    return b64(x.numpy().astype(np.float16))


def _float(x: Optional[Tensor], name: str, dims: Sequence[int]) -> Tensor:
    """``x`` as a finite float32 CPU tensor of exactly ``dims`` (-1: any size), or one error naming ``name``."""
    want = "(" + ", ".join("*" if d < 0 else str(d) for d in dims) + ")"
    if not isinstance(x, Tensor) or x.dim() != len(dims) or any(d >= 0 and s != d for s, d in zip(x.shape, dims)):
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a {want} tensor, got {got}")
    out = x.detach().float().cpu()
    if not bool(torch.isfinite(out).all()):
        raise ValueError(f"{name} holds NaN or inf; check the model's output")
    return out


def _in01(x: Tensor, name: str, what: str) -> Tensor:
    if float(x.min()) < -1e-4 or float(x.max()) > 1 + 1e-4:
        raise ValueError(f"{name} must lie in [0, 1] ({what}); got values in [{float(x.min()):.3g}, "
                         f"{float(x.max()):.3g}]")
    return x.clamp(0, 1)


def _squeeze(x: Optional[Tensor], keep: int) -> Optional[Tensor]:
    """Drop the singleton dims of a map beyond its first ``keep`` meaningful ones ((B, 1, h, w) -> (B, h, w))."""
    if not isinstance(x, Tensor):
        return x
    if keep == 2 and x.dim() == 4 and x.shape[2:] == (1, 1):
        return x[:, :, 0, 0]  # (B, C)
    if keep == 3 and x.dim() == 4 and x.shape[1] == 1:
        return x[:, 0]  # (B, h, w)
    return x


def _glimpse_payload(g: GlimpsePath, B: int, C: int, K: int) -> dict:
    centres = _float(g.centres, "images.glimpses.centres", (B, -1, 2))
    T = centres.shape[1]
    sizes = [int(s) for s in g.sizes]
    if not sizes or any(s < 1 for s in sizes):
        raise ValueError(f"images.glimpses.sizes must name the patch side (pixels) of each scale, got {list(g.sizes)}")
    out: dict = {"T": T, "k": len(sizes), "sizes": sizes, "note": str(g.probability_note),
                 "centres": [[[round(float(v), 3) for v in c] for c in item] for item in centres.tolist()],
                 "patches": None, "p": 0, "probs": None}
    if g.patches is not None:
        p = _float(g.patches, "images.glimpses.patches", (B, T, len(sizes), C, -1, -1))
        if p.shape[-1] != p.shape[-2]:
            raise ValueError(f"images.glimpses.patches must hold square p x p patches, got {tuple(p.shape[-2:])}")
        out.update(patches=_bytes01(p), p=int(p.shape[-1]))  # (B, T, k, C, p, p)
    if g.probabilities is not None:
        pr = _in01(_float(g.probabilities, "images.glimpses.probabilities", (B, T, K)),
                   "images.glimpses.probabilities", "softmax outputs")
        out["probs"] = _half(pr)  # (B, T, K)
    return out


def _block_payload(i: int, blk: BlockMaps, B: int) -> dict:
    where = f"images.blocks[{i}] ({blk.name!r})"
    out: dict = {"name": str(blk.name), "h": 0, "w": 0, "spatial": None, "C": 0, "channel": None}
    if blk.spatial is None and blk.channel is None:
        raise ValueError(f"{where} holds neither a spatial map nor channel weights; give one or leave the block out")
    if blk.spatial is not None:
        s = _in01(_float(_squeeze(blk.spatial, 3), f"{where}.spatial", (B, -1, -1)), f"{where}.spatial",
                  "a sigmoid gate per position")
        out.update(h=int(s.shape[1]), w=int(s.shape[2]), spatial=_half(s))  # (B, h, w)
    if blk.channel is not None:
        c = _in01(_float(_squeeze(blk.channel, 2), f"{where}.channel", (B, -1)), f"{where}.channel",
                  "a sigmoid gate per channel")
        out.update(C=int(c.shape[1]), channel=_half(c))  # (B, C)
    return out


def image_payload(data: ImageAttention, items: int) -> dict:
    """The page's ``images`` entry for ``data`` (checked; every error names the field and the fix)."""
    if not isinstance(data, ImageAttention):
        raise TypeError(f"images must be an ImageAttention, got {type(data).__name__}")
    x = data.images
    if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] not in (1, 3):
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"images.images must be (B, C, H, W) with C = 1 (grey) or 3 (RGB), got {got}; "
                         "add the channel dim with unsqueeze(1)")
    B, C, H, W = x.shape
    if B < 1 or B != items:
        raise ValueError(f"images.images holds {B} images but the page has {items} items; give one per item")
    if max(H, W) > MAX_IMAGE_SIDE:
        raise ValueError(f"images.images are {H}x{W}; the explorer draws images up to {MAX_IMAGE_SIDE} pixels a "
                         "side: resize them")
    xf = _in01(_float(x, "images.images", (B, C, H, W)), "images.images", "scale the pixels to 0..1")
    names = [str(n) for n in data.class_names]
    K = len(names)
    probs = _in01(_float(data.probabilities, "images.probabilities", (B, K)), "images.probabilities",
                  "softmax outputs, one per class name")
    labels = None
    if data.labels is not None:
        lab = torch.as_tensor(data.labels).detach().cpu().reshape(-1)
        if lab.numel() != B or bool(((lab < 0) | (lab >= K)).any()):
            raise ValueError(f"images.labels must be {B} class indices in 0..{K - 1}, got {lab.tolist()}")
        labels = [int(v) for v in lab.tolist()]
    if data.glimpses is None and not data.blocks:
        raise ValueError("images holds no attention: give glimpses (a RAM's path) or blocks (a CNN's maps)")
    return {"B": B, "C": C, "H": H, "W": W, "x": _bytes01(xf),  # (B, C, H, W)
            "classes": names, "probs": _half(probs), "labels": labels,  # (B, K)
            "glimpses": _glimpse_payload(data.glimpses, B, C, K) if data.glimpses is not None else None,
            "blocks": [_block_payload(i, b, B) for i, b in enumerate(data.blocks)]}
