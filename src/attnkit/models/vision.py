"""Image classifiers: a small ResNet with attention in every block, and a fully connected baseline.

* :class:`CNN`: residual blocks (He et al. 2016, arXiv:1512.03385) ``y = ReLU(x + A(F(x)))``, ``F`` two
  3x3 conv + BatchNorm layers, ``A`` the block's attention on the residual branch, where both papers put it:
  ``none``; ``se``, squeeze-and-excitation (Hu et al. 2018, arXiv:1709.01507) ``A(u) = u · σ(W_2 δ(W_1
  GAP(u)))``; ``spatial``, CBAM's spatial attention (Woo et al. 2018, arXiv:1807.06521) ``A(u) = u ·
  σ(conv([mean_c u; max_c u]))``; ``cbam``, channel then spatial attention (Woo et al. 2018). Global average
  pooling and a linear layer give the class logits.
* :class:`MLP`: ``logits = W_L ReLU(... ReLU(W_1 vec(x)))``, the fully connected row of Mnih et al. 2014
  (arXiv:1406.6247, Tables 1-2).

Both take (B, C, H, W) images of the size they were built for and return :class:`ImageOutput`.

Shape legend: B batch, C channels, H = W image side, K classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Optional

import torch
import torch.nn as nn
from torch import Tensor

from ..nn import create
from ..nn.registry import MECHANISMS
from ..nn.vision import SpatialAttention
from .layers import check_int
from .losses import cross_entropy_metrics
from .registry import ModelConfig, make_config, register_model

__all__ = ["CNN", "CNNConfig", "MLP", "MLPConfig", "ImageOutput", "BLOCK_ATTENTIONS", "block_attention",
           "check_images", "image_fields"]

#: what ``attention=`` may name in a CNN block, and what each is
BLOCK_ATTENTIONS: dict[str, str] = {
    "none": "no attention: a plain residual block",
    "se": "squeeze-and-excitation (Hu et al. 2018), channel weights",
    "spatial": "CBAM's spatial attention (Woo et al. 2018), a weight per position",
    "cbam": "CBAM (Woo et al. 2018): channel, then spatial attention",
}


def block_attention(name: Any) -> str:
    """The canonical block attention of ``name`` (``none``, ``se``, ``spatial``, ``cbam``; the mechanism
    registry's aliases of SE and CBAM, such as ``squeeze-excite``, are accepted)."""
    valid = ", ".join(BLOCK_ATTENTIONS)
    if not isinstance(name, str):
        raise TypeError(f"attention must be a name ({valid}), got {type(name).__name__}")
    key = name.strip().lower().replace("_", "-")
    if key in BLOCK_ATTENTIONS:
        return key
    if key in MECHANISMS and MECHANISMS[key].kind == "vision":
        return {"squeeze-excite": "se", "cbam": "cbam"}[MECHANISMS[key].name]
    if key in ("spatial-attention", "sa"):
        return "spatial"
    raise ValueError(f"attention={name!r} is not an attention a CNN block takes; valid: {valid}")


class ImageOutput(NamedTuple):
    logits: Tensor  # (B, K)
    maps: Optional[list[dict[str, Tensor]]] = None  # per block: "channel" (B, C, 1, 1), "spatial" (B, 1, h, w)


def check_images(x: Any, *, channels: int, size: int, who: str) -> None:
    """``x`` must be a float (B, ``channels``, ``size``, ``size``) tensor; else one error naming the fix."""
    want = f"(B, {channels}, {size}, {size})"
    if not isinstance(x, Tensor) or x.dim() != 4 or not x.is_floating_point():
        got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must be a float image batch {want} (B, C, H, W) for this {who}, got {got}")
    if x.shape[1] != channels:
        raise ValueError(f"x has {x.shape[1]} channels but this {who} was built for in_channels={channels}; "
                         f"give {want} images (convert to {channels} channel(s)) or build it with "
                         f"in_channels={x.shape[1]}")
    if tuple(x.shape[2:]) != (size, size):
        raise ValueError(f"x is {x.shape[2]}x{x.shape[3]} but this {who} was built for image_size={size}; "
                         f"resize the images to {size}x{size} or build it with image_size matching them")


def image_fields(task: Any, model: str) -> dict[str, Any]:
    """The structural fields an image task fixes: ``image_size``, ``in_channels``, ``num_classes``."""
    if getattr(task, "kind", None) != "image":
        raise ValueError(f"{model} needs an image task (digits, translated-digits, cluttered-digits); "
                         f"task {getattr(task, 'name', task)!r} is not one")
    return {"model": model, "image_size": task.image_size, "in_channels": task.channels,
            "num_classes": task.num_classes}


@dataclass(eq=False)
class _ImageConfig(ModelConfig):
    image_size: int = 8
    in_channels: int = 1
    num_classes: int = 10

    def __post_init__(self) -> None:
        check_int("image_size", self.image_size, minimum=1)
        check_int("in_channels", self.in_channels, minimum=1)
        check_int("num_classes", self.num_classes, minimum=2)


@dataclass(eq=False)
class CNNConfig(_ImageConfig):
    """``width`` channels in the first stage, doubled (and the map halved) at each of ``stages``;
    ``blocks`` residual blocks per stage; ``attention`` in every block (:data:`BLOCK_ATTENTIONS`);
    ``reduction``: SE / CBAM hidden channels = channels / reduction; ``spatial_kernel``: the spatial
    attention's conv size (7 in CBAM for 56x56 maps; these maps are 8x8 and smaller)."""

    model = "cnn"

    width: int = 32
    stages: int = 2
    blocks: int = 1
    attention: str = "none"
    reduction: int = 4
    spatial_kernel: int = 3
    dropout: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("width", "stages", "blocks", "reduction"):
            check_int(name, getattr(self, name), minimum=1)
        self.attention = block_attention(self.attention)
        if self.spatial_kernel < 1 or self.spatial_kernel % 2 == 0:
            raise ValueError(f"spatial_kernel must be an odd positive int, got {self.spatial_kernel!r}")
        if self.image_size < 2 ** (self.stages - 1):
            raise ValueError(f"image_size={self.image_size} is too small for stages={self.stages} (each stage after "
                             f"the first halves the map); use stages <= {self.image_size.bit_length()}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")


class ResidualBlock(nn.Module):
    """``y = ReLU(shortcut(x) + A(BN(conv(ReLU(BN(conv(x)))))))`` with ``A`` the block attention."""

    def __init__(self, cin: int, cout: int, *, stride: int, attention: str, reduction: int, spatial_kernel: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.kind = attention
        if attention == "se":
            self.attn = create("squeeze-excite", cout, rd_ratio=1.0 / reduction, rd_divisor=1)
        elif attention == "cbam":
            self.attn = create("cbam", cout, rd_ratio=1.0 / reduction, spatial_kernel_size=spatial_kernel)
        elif attention == "spatial":
            self.attn = SpatialAttention(spatial_kernel)
        else:
            self.attn = None
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        u = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))  # (B, C, h, w)
        maps: dict[str, Tensor] = {}
        if self.attn is not None:
            u, m = self.attn(u, return_map=True)
            maps = m if isinstance(m, dict) else {"channel" if self.kind == "se" else "spatial": m}
        return torch.relu(self.shortcut(x) + u), maps


@register_model("cnn", "resnet")
class CNN(nn.Module):
    """A small ResNet whose blocks carry ``config.attention`` (see the module docstring).

    ``CNN(CNNConfig(...))`` or ``CNN(image_size, attention="cbam", ...)``. ``forward(x (B, C, H, W), *,
    return_maps=False) -> ImageOutput(logits (B, K), maps)``: ``maps`` holds each block's attention maps.
    """

    config_class = CNNConfig

    def __init__(self, config: CNNConfig | int, /, **fields: Any) -> None:
        super().__init__()
        cfg = make_config(CNNConfig, config, "image_size", fields)
        self.config = cfg
        self.stem = nn.Sequential(nn.Conv2d(cfg.in_channels, cfg.width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(cfg.width), nn.ReLU())
        blocks, cin = [], cfg.width
        for s in range(cfg.stages):
            cout = cfg.width * 2 ** s
            for b in range(cfg.blocks):
                blocks.append(ResidualBlock(cin, cout, stride=2 if s > 0 and b == 0 else 1, attention=cfg.attention,
                                            reduction=cfg.reduction, spatial_kernel=cfg.spatial_kernel))
                cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.drop = nn.Dropout(cfg.dropout) if cfg.dropout else nn.Identity()
        self.head = nn.Linear(cin, cfg.num_classes)

    @classmethod
    def config_for_task(cls, task: Any, **fields: Any) -> dict[str, Any]:
        """Sized for an image task: two stages on 8x8 digits, three on a larger canvas."""
        cfg = image_fields(task, "cnn")
        cfg["stages"] = 2 if task.image_size <= 8 else 3
        cfg.update({k: v for k, v in fields.items() if v is not None})
        CNNConfig.from_dict(cfg)  # unknown or invalid fields raise here
        return cfg

    def forward(self, x: Tensor, *, return_maps: bool = False) -> ImageOutput:
        cfg = self.config
        check_images(x, channels=cfg.in_channels, size=cfg.image_size, who="cnn")
        h = self.stem(x)  # (B, width, H, W)
        maps = []
        for block in self.blocks:
            h, m = block(h)
            maps.append(m)
        logits = self.head(self.drop(h.mean((2, 3))))  # (B, K)
        return ImageOutput(logits, maps if return_maps else None)

    def loss(self, batch: Any) -> tuple[Tensor, dict[str, float]]:
        """Cross-entropy of the class logits against ``batch.label``."""
        return cross_entropy_metrics(self(batch.x).logits, batch.label, accuracy=not self.training)


@dataclass(eq=False)
class MLPConfig(_ImageConfig):
    """``layers`` hidden layers of ``hidden_dim`` ReLU units over the flattened image."""

    model = "mlp"

    hidden_dim: int = 256
    layers: int = 2
    dropout: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("hidden_dim", self.hidden_dim, minimum=1)
        check_int("layers", self.layers, minimum=1)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")


@register_model("mlp", "fc", "fully-connected")
class MLP(nn.Module):
    """The fully connected baseline: ``forward(x (B, C, H, W)) -> ImageOutput(logits (B, K))``."""

    config_class = MLPConfig

    def __init__(self, config: MLPConfig | int, /, **fields: Any) -> None:
        super().__init__()
        cfg = make_config(MLPConfig, config, "image_size", fields)
        self.config = cfg
        dims = [cfg.in_channels * cfg.image_size ** 2] + [cfg.hidden_dim] * cfg.layers
        layers: list[nn.Module] = []
        for a, b in zip(dims, dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()] + ([nn.Dropout(cfg.dropout)] if cfg.dropout else [])
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(dims[-1], cfg.num_classes)

    @classmethod
    def config_for_task(cls, task: Any, **fields: Any) -> dict[str, Any]:
        cfg = image_fields(task, "mlp")
        cfg.update({k: v for k, v in fields.items() if v is not None})
        MLPConfig.from_dict(cfg)
        return cfg

    def forward(self, x: Tensor) -> ImageOutput:
        cfg = self.config
        check_images(x, channels=cfg.in_channels, size=cfg.image_size, who="mlp")
        return ImageOutput(self.head(self.body(x.flatten(1))))  # (B, C·H·W) -> (B, K)

    def loss(self, batch: Any) -> tuple[Tensor, dict[str, float]]:
        return cross_entropy_metrics(self(batch.x).logits, batch.label, accuracy=not self.training)
