"""Attention for CNN feature maps, with timm-compatible arguments and parameter names.

* :class:`SqueezeExcite`: Hu, Shen & Sun 2018, "Squeeze-and-Excitation Networks"
  (arXiv:1709.01507): ``y = x · σ(W_2 δ(W_1 GAP(x)))``.
* :class:`SpatialAttention`: Woo et al. 2018, CBAM (arXiv:1807.06521):
  ``y = x · σ(BN(conv_7x7([mean_c(x); max_c(x)])))``.
* :class:`CBAM`: Woo et al. 2018 (arXiv:1807.06521): channel attention
  ``M_c = σ(MLP(AvgPool(x)) + MLP(MaxPool(x)))``, then spatial attention.

Channels first (B, C, H, W). Each returns its attention map(s) with
``return_map=True``. Parameter names follow timm's ``SEModule``,
``CbamModule`` / ``ChannelAttn`` / ``SpatialAttn`` (``fc1``, ``fc2``,
``conv.conv``, ``conv.bn``), so their state_dicts load.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
import torch.nn as nn
from torch import Tensor

from ._common import check_dim
from .registry import register_mechanism

__all__ = ["SqueezeExcite", "SpatialAttention", "CBAM", "make_divisible", "ACTIVATIONS", "GATES"]

#: activation names accepted by ``act_layer`` (a class or callable returning a module works too)
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
}
#: gate names accepted by ``gate_layer``
GATES: dict[str, Callable[[], nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "hard_sigmoid": nn.Hardsigmoid,
    "tanh": nn.Tanh,
}


def _layer(spec: Any, table: dict[str, Callable[[], nn.Module]], name: str) -> nn.Module:
    if isinstance(spec, str):
        if spec not in table:
            raise ValueError(f"{name} must be one of {sorted(table)} or an nn.Module class, got {spec!r}")
        return table[spec]()
    if isinstance(spec, type) and issubclass(spec, nn.Module):
        return spec()
    if callable(spec):
        m = spec()
        if isinstance(m, nn.Module):
            return m
    raise TypeError(f"{name} must be a name from {sorted(table)} or an nn.Module class, got {spec!r}")


def make_divisible(v: float, divisor: int = 8, min_value: Optional[int] = None, round_limit: float = 0.9) -> int:
    """timm's rounding of channel counts: the nearest multiple of ``divisor``, at least
    ``min_value`` (default divisor), bumped up if it falls below ``round_limit · v``."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < round_limit * v:
        new_v += divisor
    return new_v


def _rd(channels: int, rd_ratio: float, rd_channels: Optional[int], rd_divisor: int) -> int:
    check_dim(channels, "channels")
    if rd_channels is not None:
        check_dim(rd_channels, "rd_channels")
        return rd_channels
    if not (0 < rd_ratio <= 1):
        raise ValueError(f"rd_ratio (the reduction, hidden = channels · rd_ratio) must be in (0, 1], got {rd_ratio!r}")
    return make_divisible(channels * rd_ratio, rd_divisor, round_limit=0.0)


def _check_image(x: Tensor, channels: Optional[int], who: str) -> None:
    if not isinstance(x, Tensor) or x.dim() != 4:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{who} takes channels-first images (B, C, H, W), got {got}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{who} was built for {channels} channels but x has {x.shape[1]} (x is (B, C, H, W))")


@register_mechanism(
    "squeeze-excite", "se", "squeeze-and-excitation", kind="vision",
    paper="Hu, Shen & Sun 2018 (arXiv:1709.01507)", formula="y = x · σ(W_2 δ(W_1 GAP(x)))",
)
class SqueezeExcite(nn.Module):
    """Squeeze-and-Excitation (Hu et al. 2018): ``y = x · σ(W_2 δ(W_1 GAP(x)))``.

    Args (timm's ``SEModule``): channels; rd_ratio (1/16); rd_channels
    (overrides rd_ratio); rd_divisor (8); add_maxpool (average the avg- and
    max-pooled squeeze); bias; act_layer ("relu"); norm_layer (None or a
    class taking the channel count); gate_layer ("sigmoid").

    ``forward(x (B, C, H, W), *, return_map=False)`` -> y, or (y, map (B, C, 1, 1)).
    """

    def __init__(
        self,
        channels: int,
        *,
        rd_ratio: float = 1.0 / 16,
        rd_channels: Optional[int] = None,
        rd_divisor: int = 8,
        add_maxpool: bool = False,
        bias: bool = True,
        act_layer: Any = "relu",
        norm_layer: Any = None,
        gate_layer: Any = "sigmoid",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        rd = _rd(channels, rd_ratio, rd_channels, rd_divisor)
        fk = {"device": device, "dtype": dtype}
        self.channels = channels
        self.add_maxpool = bool(add_maxpool)
        self.fc1 = nn.Conv2d(channels, rd, kernel_size=1, bias=bias, **fk)
        self.bn = norm_layer(rd, **fk) if norm_layer is not None else nn.Identity()
        self.act = _layer(act_layer, ACTIVATIONS, "act_layer")
        self.fc2 = nn.Conv2d(rd, channels, kernel_size=1, bias=bias, **fk)
        self.gate = _layer(gate_layer, GATES, "gate_layer")

    def attention_map(self, x: Tensor) -> Tensor:
        """The channel weights σ(W_2 δ(W_1 GAP(x))), (B, C, 1, 1)."""
        _check_image(x, self.channels, "SqueezeExcite")
        s = x.mean((2, 3), keepdim=True)  # (B, C, 1, 1)
        if self.add_maxpool:
            s = 0.5 * s + 0.5 * x.amax((2, 3), keepdim=True)
        return self.gate(self.fc2(self.act(self.bn(self.fc1(s)))))

    def forward(self, x: Tensor, *, return_map: bool = False):
        m = self.attention_map(x)
        y = x * m
        return (y, m) if return_map else y


class _ConvBN(nn.Module):
    """conv (no bias) + BatchNorm, named like timm's ConvNormAct (conv, bn)."""

    def __init__(self, cin: int, cout: int, kernel_size: int, *, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2, bias=False, device=device, dtype=dtype)
        self.bn = nn.BatchNorm2d(cout, device=device, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x))


class SpatialAttention(nn.Module):
    """CBAM's spatial attention (Woo et al. 2018): ``y = x · σ(BN(conv_k([mean_c(x); max_c(x)])))``.

    Args (timm's ``SpatialAttn``): kernel_size (7, odd); gate_layer ("sigmoid").
    Channel-agnostic: the first argument is the kernel size.

    ``forward(x (B, C, H, W), *, return_map=False)`` -> y, or (y, map (B, 1, H, W)).
    """

    def __init__(
        self, kernel_size: int = 7, *, gate_layer: Any = "sigmoid", device: Any = None, dtype: Any = None
    ) -> None:
        super().__init__()
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be an odd positive int (7 in CBAM), got {kernel_size!r}")
        self.kernel_size = kernel_size
        self.conv = _ConvBN(2, 1, kernel_size, device=device, dtype=dtype)
        self.gate = _layer(gate_layer, GATES, "gate_layer")

    def attention_map(self, x: Tensor) -> Tensor:
        """The spatial weights (B, 1, H, W)."""
        _check_image(x, None, "SpatialAttention")
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)  # (B, 2, H, W)
        return self.gate(self.conv(pooled))

    def forward(self, x: Tensor, *, return_map: bool = False):
        m = self.attention_map(x)
        y = x * m
        return (y, m) if return_map else y


class ChannelAttention(nn.Module):
    """CBAM's channel attention: ``M_c = σ(MLP(AvgPool(x)) + MLP(MaxPool(x)))`` (timm's ``ChannelAttn``)."""

    def __init__(self, channels: int, *, rd_ratio: float = 1.0 / 16, rd_channels: Optional[int] = None,
                 rd_divisor: int = 1, act_layer: Any = "relu", gate_layer: Any = "sigmoid", mlp_bias: bool = False,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        rd = _rd(channels, rd_ratio, rd_channels, rd_divisor)
        fk = {"device": device, "dtype": dtype}
        self.channels = channels
        self.fc1 = nn.Conv2d(channels, rd, 1, bias=mlp_bias, **fk)
        self.act = _layer(act_layer, ACTIVATIONS, "act_layer")
        self.fc2 = nn.Conv2d(rd, channels, 1, bias=mlp_bias, **fk)
        self.gate = _layer(gate_layer, GATES, "gate_layer")

    def attention_map(self, x: Tensor) -> Tensor:
        _check_image(x, self.channels, "ChannelAttention")
        avg = self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True))))  # (B, C, 1, 1)
        mx = self.fc2(self.act(self.fc1(x.amax((2, 3), keepdim=True))))  # (B, C, 1, 1)
        return self.gate(avg + mx)

    def forward(self, x: Tensor, *, return_map: bool = False):
        m = self.attention_map(x)
        y = x * m
        return (y, m) if return_map else y


@register_mechanism(
    "cbam", "convolutional-block-attention", kind="vision",
    paper="Woo, Park, Lee & Kweon 2018 (arXiv:1807.06521)",
    formula="x' = x · σ(MLP(avg(x)) + MLP(max(x))); y = x' · σ(conv_7x7([mean_c(x'); max_c(x')]))",
)
class CBAM(nn.Module):
    """Convolutional Block Attention Module (Woo et al. 2018): channel, then spatial attention.

    Args (timm's ``CbamModule``): channels; rd_ratio (1/16); rd_channels;
    rd_divisor (1); spatial_kernel_size (7); act_layer ("relu"); gate_layer
    ("sigmoid"); mlp_bias (False).

    ``forward(x (B, C, H, W), *, return_map=False)`` -> y, or
    (y, {"channel": (B, C, 1, 1), "spatial": (B, 1, H, W)}).
    """

    def __init__(
        self,
        channels: int,
        *,
        rd_ratio: float = 1.0 / 16,
        rd_channels: Optional[int] = None,
        rd_divisor: int = 1,
        spatial_kernel_size: int = 7,
        act_layer: Any = "relu",
        gate_layer: Any = "sigmoid",
        mlp_bias: bool = False,
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, rd_ratio=rd_ratio, rd_channels=rd_channels, rd_divisor=rd_divisor,
                                        act_layer=act_layer, gate_layer=gate_layer, mlp_bias=mlp_bias,
                                        device=device, dtype=dtype)
        self.spatial = SpatialAttention(spatial_kernel_size, gate_layer=gate_layer, device=device, dtype=dtype)

    def forward(self, x: Tensor, *, return_map: bool = False):
        x, mc = self.channel(x, return_map=True)
        y, ms = self.spatial(x, return_map=True)
        return (y, {"channel": mc, "spatial": ms}) if return_map else y
