"""The attention explorer: one self-contained HTML file to look inside a model's attention.

Each head of each layer holds the weights ``α_h = softmax(Q_h K_hᵀ · scale)`` of multi-head
attention (Vaswani et al. 2017, arXiv:1706.03762); the explorer draws them the ways people read
them: bertviz's head and model views (Vig 2019, arXiv:1906.05714), the alignment matrix of
Bahdanau et al. (2014, arXiv:1409.0473, Fig. 3), the step-by-step computation of one query
(``attnkit explain``: scores, softmax, weighted sum ``o = Σ_s α_s v_s``), and beside them the
gradient x input saliency of an output over the input tokens, ``r_i = (∂y/∂x_i) · x_i``
(Shrikumar et al. 2016, arXiv:1605.01713; Simonyan et al. 2013, arXiv:1312.6034), so implicit
and explicit attention can be compared (Jain & Wallace 2019, arXiv:1902.10186).

The page is one file: every script and style inline, no request of any kind, drawn on
``<canvas>``. Weights are stored as one byte each on a log scale, ``c = 255 + 254 · ln(α) / K``
(``c = 0`` for ``α < e^-K``; K = 14), so every weight keeps 2.8 % relative precision (half a step,
``e^(K/508) - 1``) down to 8e-7 — with ``top_k`` only the k largest weights of each row are kept.
Values (for the weighted sum) are float16, log-sum-exps (for the raw scores) and saliency float32,
all base64.

Vision models (:mod:`attnkit.viz.explore_images`) fill :attr:`ExplorerData.images` instead of (or
beside) the token layers: the same page then shows a RAM's glimpse path step by step, or a CNN's
spatial attention maps over the image and its channel weights per block.

    data = ExplorerData(tokens={"tokens": [toks]}, layers=[AttentionLayer("layer 0", w)])
    explore(data).save("report.html")        # or, in a notebook, the Explorer as the cell's value
    explore(ExplorerData(images=ImageAttention(x, probs, names, blocks=[BlockMaps("block 0", spatial=m)])))
"""

from __future__ import annotations

import dataclasses
import html as html_lib
import json
import math
import re
from importlib import resources
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from .explore_images import BlockMaps, GlimpsePath, ImageAttention, b64, image_payload

__all__ = ["AttentionLayer", "ExplorerData", "Explorer", "explore", "encode_weights", "decode_weights", "LOG_RANGE",
           "bertviz_json_bytes", "ImageAttention", "GlimpsePath", "BlockMaps"]

#: K of the one-byte log code: weights below e^-K (8.3e-7) are stored as 0
LOG_RANGE = 14.0
#: the most tokens one sequence may hold (the page stays interactive to here)
MAX_TOKENS = 4096
#: the most weights one page stores (1 byte each, 4/3 in base64): past it a browser cannot hold the page's text
MAX_STORED = 150_000_000


@dataclasses.dataclass(eq=False)
class AttentionLayer:
    """The attention of one layer: weights (B, H, L, S), rows are ``query`` tokens, columns ``key`` tokens.

    ``query``/``key`` name sequences of :attr:`ExplorerData.tokens` (the same name for self-attention).
    ``lse`` (B, H, L): the log-sum-exp of each row's scaled scores, so the page can show the raw scores
    ``s = ln α + lse``; without it, scores are shown relative to the row's largest (``ln α - ln α_max``).
    ``values`` (B, H, S, Ev): the value vectors, for the weighted sum of the step-by-step panel.
    """

    name: str
    weights: Tensor  # (B, H, L, S)
    query: str = "tokens"
    key: str = "tokens"
    heads: Optional[Sequence[str]] = None
    lse: Optional[Tensor] = None  # (B, H, L)
    values: Optional[Tensor] = None  # (B, H, S, Ev)


@dataclasses.dataclass(eq=False)
class ExplorerData:
    """Everything the explorer shows; one neutral container whatever the source.

    ``tokens``: sequence name -> one token list per batch item (query and key tokens separately for
    cross attention, e.g. ``{"source": ..., "target": ...}``); item b of a layer uses rows
    ``[:len(tokens[query][b])]`` and columns ``[:len(tokens[key][b])]`` (the rest is padding).
    ``saliency`` (B, R, N): gradient x input of R outputs over the N tokens of sequence
    ``saliency_over``; ``saliency_rows`` names the R outputs (per item: a list of R labels). When
    R equals the number of query tokens of a layer whose keys are ``saliency_over``, row i is
    shown beside query i's attention. ``images``: a vision model's images and attention (glimpses,
    spatial maps, channel weights); a page may hold tokens, images or both (one item each, in order).
    """

    tokens: dict[str, list[list[str]]] = dataclasses.field(default_factory=dict)
    layers: list[AttentionLayer] = dataclasses.field(default_factory=list)
    saliency: Optional[Tensor] = None  # (B, R, N)
    saliency_over: str = "tokens"
    saliency_rows: Optional[list[list[str]]] = None
    saliency_label: str = "gradient x input"
    title: str = "attention"
    kind: str = ""
    items: Optional[list[str]] = None  # a label per batch item
    images: Optional[ImageAttention] = None

    @property
    def batch_size(self) -> int:
        if self.tokens:
            return len(next(iter(self.tokens.values())))
        return self.images.batch_size if isinstance(self.images, ImageAttention) else 0


# -- encoding -------------------------------------------------------------------------------------
def encode_weights(w: Tensor) -> np.ndarray:
    """Weights in [0, 1] -> uint8 codes ``c = round(255 + 254 · ln(w) / K)``, 0 below e^-K (K = LOG_RANGE)."""
    x = torch.as_tensor(w, dtype=torch.float32)
    c = torch.round(255.0 + (254.0 / LOG_RANGE) * torch.log(x.clamp_min(1e-30))).clamp_(1, 255)
    c.masked_fill_(x < math.exp(-LOG_RANGE) * (1 - 1e-6), 0)
    return c.to(torch.uint8).numpy()


def decode_weights(codes: np.ndarray) -> np.ndarray:
    """uint8 codes -> weights (float32): ``exp(-K · (255 - c) / 254)``, 0 for c = 0 (the page's lookup table)."""
    c = np.asarray(codes, dtype=np.float64)
    return np.where(c > 0, np.exp(-LOG_RANGE * (255.0 - c) / 254.0), 0.0).astype(np.float32)


def bertviz_json_bytes(weights: Tensor | Sequence[Tensor], tokens: Sequence[str]) -> int:
    """Bytes of bertviz's head-view JSON for the same attention (Vig 2019): ``json.dumps`` of
    ``{"attention": {"all": {"attn": attn.tolist(), "left_text": tokens, "right_text": tokens}},
    "default_filter": "all"}`` with ``attn`` the (layers, H, N, N) stack; counted one layer at a time
    so the multi-hundred-megabyte text is never held whole."""
    layers = list(weights) if not isinstance(weights, Tensor) else list(weights.unbind(0))
    shell = {"attention": {"all": {"attn": [], "left_text": list(tokens), "right_text": list(tokens)}},
             "default_filter": "all"}
    total = len(json.dumps(shell))  # holds "[]" for attn: the layers go between the brackets
    for w in layers:
        w = w.detach().float().cpu()
        total += len(json.dumps(w.reshape(-1, *w.shape[-3:])[0].tolist() if w.dim() == 4 else w.tolist()))
    return total + 2 * max(0, len(layers) - 1)  # ", " between layers


def _check_layer(i: int, layer: AttentionLayer, data: ExplorerData) -> Tensor:
    w = layer.weights
    where = f"layers[{i}] ({layer.name!r})"
    if not isinstance(w, Tensor) or w.dim() != 4:
        got = f"{tuple(w.shape)}" if isinstance(w, Tensor) else type(w).__name__
        raise ValueError(f"{where}.weights must be a (B, H, L, S) tensor, got {got}; add missing dims with unsqueeze")
    for side in (layer.query, layer.key):
        if side not in data.tokens:
            raise ValueError(f"{where} names the sequence {side!r}, but tokens holds {sorted(data.tokens)}; "
                             "give its tokens in ExplorerData.tokens")
    B, H, L, S = w.shape
    if B != data.batch_size:
        raise ValueError(f"{where}.weights has batch size {B} but tokens hold {data.batch_size} items; "
                         "give one token list per batch item")
    for b in range(B):
        nq, nk = len(data.tokens[layer.query][b]), len(data.tokens[layer.key][b])
        if nq > L or nk > S:
            raise ValueError(f"{where}: item {b} has {nq} query and {nk} key tokens but the weights are "
                             f"(L, S) = ({L}, {S}); the weights must cover every token")
    if layer.heads is not None and len(layer.heads) != H:
        raise ValueError(f"{where}.heads names {len(layer.heads)} heads but the weights have H = {H}")
    wf = w.detach().float().cpu()
    if not bool(torch.isfinite(wf).all()) or float(wf.min()) < 0 or float(wf.max()) > 1 + 1e-4:
        raise ValueError(f"{where}.weights must be finite attention weights in [0, 1]; got values in "
                         f"[{float(wf.min()):.3g}, {float(wf.max()):.3g}] (pass softmax weights, not scores)")
    if layer.lse is not None and tuple(layer.lse.shape) != (B, H, L):
        raise ValueError(f"{where}.lse must be (B, H, L) = {(B, H, L)}, got {tuple(layer.lse.shape)}")
    if layer.values is not None and (layer.values.dim() != 4 or tuple(layer.values.shape[:3]) != (B, H, S)):
        raise ValueError(f"{where}.values must be (B, H, S, Ev) with (B, H, S) = {(B, H, S)}, "
                         f"got {tuple(layer.values.shape)}")
    return wf.clamp(0, 1)


def _layer_payload(i: int, layer: AttentionLayer, data: ExplorerData, top_k: Optional[int],
                   values: bool) -> dict:
    w = _check_layer(i, layer, data)
    B, H, L, S = w.shape
    out: dict = {"name": str(layer.name), "query": layer.query, "key": layer.key, "B": B, "H": H, "L": L, "S": S,
                 "heads": [str(h) for h in (layer.heads or [f"head {h}" for h in range(H)])]}
    if top_k is not None and top_k < S:
        top, idx = w.topk(top_k, dim=-1)  # (B, H, L, k)
        out.update(enc="topk", k=top_k, w=b64(encode_weights(top)),
                   idx=b64(idx.numpy().astype(np.uint16 if S <= 65535 else np.uint32)),
                   idx_bytes=2 if S <= 65535 else 4)
    else:
        out.update(enc="dense", w=b64(encode_weights(w)))
    out["lse"] = b64(layer.lse.detach().float().cpu().numpy()) if layer.lse is not None else None
    if values and layer.values is not None:
        v = layer.values.detach().float().cpu()
        out.update(values=b64(v.numpy().astype(np.float16)), Ev=int(v.shape[-1]))
    else:
        out.update(values=None, Ev=0)
    return out


def _saliency_payload(data: ExplorerData) -> Optional[dict]:
    s = data.saliency
    if s is None:
        return None
    if data.saliency_over not in data.tokens:
        raise ValueError(f"saliency_over={data.saliency_over!r} is not one of the sequences {sorted(data.tokens)}")
    if not isinstance(s, Tensor) or s.dim() != 3 or s.shape[0] != data.batch_size:
        got = tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__
        raise ValueError(f"saliency must be (B, R, N) with B = {data.batch_size}, got {got}")
    B, R, N = s.shape
    rows = data.saliency_rows or [[f"output {r}" for r in range(R)] for _ in range(B)]
    if len(rows) != B or any(len(r) != R for r in rows):
        raise ValueError(f"saliency_rows must hold {R} labels for each of the {B} items")
    sf = s.detach().float().cpu()
    if not bool(torch.isfinite(sf).all()):
        raise ValueError("saliency holds NaN or inf; check the gradient of the chosen output")
    return {"over": data.saliency_over, "R": R, "N": N, "rows": [[str(x) for x in r] for r in rows],
            "label": data.saliency_label, "data": b64(sf.numpy())}


def _asset(name: str) -> str:
    return resources.files("attnkit.viz").joinpath("explorer", name).read_text(encoding="utf-8")


class Explorer:
    """A rendered explorer page: :attr:`html` (one self-contained document), :meth:`save`, and
    ``_repr_html_`` so a notebook shows it in place (in an iframe, isolated from the notebook's page)."""

    def __init__(self, html: str, payload_bytes: int) -> None:
        self.html = html
        self.payload_bytes = payload_bytes

    def __len__(self) -> int:
        return len(self.html.encode("utf-8"))

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        if p.is_dir():
            raise IsADirectoryError(f"{p} is a directory; give a file name such as {p / 'report.html'}")
        if p.parent and not p.parent.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(self.html, encoding="utf-8")
        return p

    def _repr_html_(self) -> str:
        return (f'<iframe srcdoc="{html_lib.escape(self.html, quote=True)}" '
                'style="width:100%;height:860px;border:0" sandbox="allow-scripts"></iframe>')

    def __repr__(self) -> str:
        return f"Explorer({len(self)} bytes)"


def explore(data: ExplorerData, *, top_k: Optional[int] = None, values: bool = True) -> Explorer:
    """The explorer page for ``data``.

    ``top_k``: keep only the k largest weights of each row (smaller files for long inputs; the rest
    show as 0). ``values=False`` leaves out the value vectors (the step panel then stops at the weights).
    """
    if not isinstance(data, ExplorerData):
        raise TypeError(f"data must be an ExplorerData, got {type(data).__name__}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be a positive int or None, got {top_k!r}")
    if data.images is not None and not isinstance(data.images, ImageAttention):
        raise TypeError(f"data.images must be an ImageAttention, got {type(data.images).__name__}")
    if not data.layers and data.images is None:
        raise ValueError("data.layers is empty; give at least one AttentionLayer (or images=ImageAttention(...) "
                         "for a vision model)")
    if data.layers and (not data.tokens or data.batch_size == 0):
        raise ValueError("data.tokens is empty; give one token list per batch item")
    if data.batch_size == 0:
        raise ValueError("data.images holds no image; give a (B, C, H, W) batch with B >= 1")
    for name, seqs in data.tokens.items():
        if len(seqs) != data.batch_size:
            raise ValueError(f"tokens[{name!r}] has {len(seqs)} items but another sequence has {data.batch_size}")
        longest = max((len(s) for s in seqs), default=0)
        if longest > MAX_TOKENS:
            raise ValueError(f"tokens[{name!r}] holds {longest} tokens; the explorer takes at most {MAX_TOKENS} "
                             "per sequence: cut the text or pass a window of it")
    stored = sum(w.numel() if top_k is None or top_k >= w.shape[-1] else w[..., 0].numel() * top_k * 3  # index + code
                 for w in (layer.weights for layer in data.layers) if isinstance(w, Tensor))
    if stored > MAX_STORED:
        raise ValueError(f"the page would store {stored:,} weights (about {stored * 4 / 3 / 1e6:,.0f} MB), more "
                         f"than a browser holds well ({MAX_STORED:,}); pass top_k=32 or fewer layers "
                         "or heads")
    items = data.items or [f"item {b}" for b in range(data.batch_size)]
    if len(items) != data.batch_size:
        raise ValueError(f"items names {len(items)} items but tokens hold {data.batch_size}")
    payload = {
        "version": 1, "title": str(data.title), "kind": str(data.kind), "items": [str(x) for x in items],
        "tokens": {k: [[str(t) for t in s] for s in v] for k, v in data.tokens.items()},
        "layers": [_layer_payload(i, layer, data, top_k, values) for i, layer in enumerate(data.layers)],
        "saliency": _saliency_payload(data), "logRange": LOG_RANGE,
        "images": image_payload(data.images, data.batch_size) if data.images is not None else None,
    }
    text = json.dumps(payload, ensure_ascii=True, separators=(",", ":")).replace("</", "<\\/")
    parts = {"/*ATTNKIT_CSS*/": _asset("explorer.css"), "{{TITLE}}": html_lib.escape(str(data.title)),
             "/*ATTNKIT_DATA*/": text, "/*ATTNKIT_JS*/": _asset("explorer.js"),
             "/*ATTNKIT_VISION_JS*/": _asset("explorer_vision.js")}
    page = re.sub("|".join(re.escape(k) for k in parts), lambda m: parts[m.group(0)], _asset("template.html"))
    return Explorer(page, len(text))
