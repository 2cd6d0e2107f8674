"""Positional information for attention, which is otherwise blind to order.

* :class:`SinusoidalPositionalEncoding`: Vaswani et al. 2017 (arXiv:1706.03762),
  ``PE[p, 2i] = sin(p / 10000^(2i/D)),  PE[p, 2i+1] = cos(p / 10000^(2i/D))``, added to x.
* :class:`LearnedPositionalEncoding`: a learned table (Gehring et al. 2017,
  arXiv:1705.03122), ``x_p + P[p]``.
* :class:`RotaryEmbedding`: RoPE, Su et al. 2021 (arXiv:2104.09864),
  ``q_p ↦ R(p θ) q_p`` so that ``⟨R(iθ) q, R(jθ) k⟩`` depends on i − j only.
* :class:`ALiBi`: Press, Smith & Lewis 2021 (arXiv:2108.12409),
  ``score_ij - m_h · |i − j|``, a per-head linear bias given as a FlexAttention
  ``score_mod`` (no stored N² tensor).

Tables are computed per call from the positions (no stored (max_len, D)
buffer), so any length and any offset work.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
import torch.nn as nn
from torch import Tensor

from ._common import check_dim, check_dropout

__all__ = [
    "SinusoidalPositionalEncoding",
    "LearnedPositionalEncoding",
    "RotaryEmbedding",
    "ALiBi",
    "sinusoidal_table",
    "rotate_half",
    "apply_rotary",
    "alibi_slopes",
]


def _positions(L: int, offset: int | Tensor, positions: Optional[Tensor], device: Any) -> Tensor:
    """Positions (L,) or (B, L): explicit, or offset + arange(L)."""
    if positions is not None:
        if not isinstance(positions, Tensor) or positions.shape[-1] != L or positions.dim() not in (1, 2):
            got = tuple(positions.shape) if isinstance(positions, Tensor) else type(positions).__name__
            raise ValueError(f"positions must be a tensor of shape (L,) or (B, L) with L = {L}, got {got}")
        return positions.to(device)
    if isinstance(offset, Tensor):
        return offset.to(device).view(-1, 1) + torch.arange(L, device=device)  # (B, L)
    return torch.arange(offset, offset + L, device=device)  # (L,)


def sinusoidal_table(
    positions: Tensor, dim: int, *, base: float = 10000.0, dtype: torch.dtype = torch.float32
) -> Tensor:
    """(..., N) positions -> (..., N, dim) sinusoids: sin at even features, cos at odd."""
    i = torch.arange(0, dim, 2, device=positions.device, dtype=torch.float64)
    inv = torch.exp(-math.log(base) * i / dim)  # (ceil(D/2),)
    ang = positions.to(torch.float64).unsqueeze(-1) * inv  # (..., N, ceil(D/2))
    pe = torch.stack([ang.sin(), ang.cos()], dim=-1).flatten(-2)  # (..., N, 2*ceil(D/2)) interleaved
    return pe[..., :dim].to(dtype)


class SinusoidalPositionalEncoding(nn.Module):
    """Vaswani et al. 2017 (arXiv:1706.03762): ``x + PE``,
    ``PE[p, 2i] = sin(p / base^(2i/D)), PE[p, 2i+1] = cos(p / base^(2i/D))``.

    Args:
        dim: D, the feature size of x.
        base: 10000 in the paper.
        scale: multiply x by this first (the paper uses sqrt(D) on embeddings);
            default 1.
        dropout: dropout on the sum (training only).

    ``forward(x (B, L, D), *, offset=0, positions=None) -> (B, L, D)``;
    ``offset`` (int or (B,) tensor) is where x starts (cached decoding).
    """

    def __init__(self, dim: int, *, base: float = 10000.0, scale: float = 1.0, dropout: float = 0.0,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        check_dim(dim, "dim")
        if not base > 1:
            raise ValueError(f"base must be > 1, got {base!r}")
        self.dim, self.base, self.scale = dim, float(base), float(scale)
        p_drop = check_dropout(dropout)
        self.drop = nn.Dropout(p_drop) if p_drop > 0 else nn.Identity()

    def table(self, positions: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        return sinusoidal_table(positions, self.dim, base=self.base, dtype=dtype)

    def forward(self, x: Tensor, *, offset: int | Tensor = 0, positions: Optional[Tensor] = None) -> Tensor:
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"x must be (B, L, {self.dim}), got {tuple(x.shape)}")
        pos = _positions(x.shape[1], offset, positions, x.device)
        return self.drop(x * self.scale + self.table(pos, x.dtype))  # (B, L, D)

    def extra_repr(self) -> str:
        return f"{self.dim}, base={self.base}, scale={self.scale}"


class LearnedPositionalEncoding(nn.Module):
    """A learned position table (Gehring et al. 2017, arXiv:1705.03122; BERT, GPT): ``x_p + P[p]``.

    ``forward(x (B, L, D), *, offset=0, positions=None) -> (B, L, D)``; positions
    past ``max_len`` raise.
    """

    def __init__(self, dim: int, *, max_len: int, dropout: float = 0.0, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        check_dim(dim, "dim")
        check_dim(max_len, "max_len")
        self.dim, self.max_len = dim, max_len
        self.embedding = nn.Embedding(max_len, dim, device=device, dtype=dtype)
        nn.init.normal_(self.embedding.weight, std=0.02)
        p_drop = check_dropout(dropout)
        self.drop = nn.Dropout(p_drop) if p_drop > 0 else nn.Identity()

    def forward(self, x: Tensor, *, offset: int | Tensor = 0, positions: Optional[Tensor] = None) -> Tensor:
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"x must be (B, L, {self.dim}), got {tuple(x.shape)}")
        if positions is None and type(offset) is int and 0 <= offset and offset + x.shape[1] <= self.max_len:
            # consecutive positions: rows offset..offset+L-1 of the table, a view (no index tensor,
            # no gather, and a slice's backward instead of the embedding's); same numbers
            p = self.embedding.weight[offset:offset + x.shape[1]]  # (L, D)
            return self.drop(x + (p if p.dtype == x.dtype else p.to(x.dtype)))  # (B, L, D)
        pos = _positions(x.shape[1], offset, positions, x.device)
        # the last position, without reading the tensor when it is offset + L - 1
        last = offset + x.shape[1] - 1 if positions is None and isinstance(offset, int) else (
            int(pos.max()) if pos.numel() else -1)
        if last >= self.max_len:
            raise ValueError(
                f"position {last} is past max_len={self.max_len} of the learned table; "
                "build it with a larger max_len or use SinusoidalPositionalEncoding"
            )
        return self.drop(x + self.embedding(pos).to(x.dtype))  # (B, L, D)

    def extra_repr(self) -> str:
        return f"{self.dim}, max_len={self.max_len}"


def rotate_half(x: Tensor) -> Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dim."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """``x cos + rotate_half(x) sin``: rotates feature pairs (i, i + D/2) by their angles."""
    return x * cos + rotate_half(x) * sin


class RotaryEmbedding(nn.Module):
    """RoPE, Su et al. 2021 (arXiv:2104.09864): ``q_p ↦ R(p θ) q_p``, θ_i = base^(-2i/D).

    Rotates feature pairs (i, i + D/2) of each head ("rotate-half", the
    GPT-NeoX / Llama layout), so ``⟨R(iθ) q, R(jθ) k⟩`` depends only on i − j.

    ``forward(x (B, H, N, D), *, offset=0, positions=None) -> (B, H, N, D)``;
    positions (N,) or (B, N). Angles are computed in float32 (float64 for
    float64 inputs).
    """

    def __init__(self, dim: int, *, base: float = 10000.0, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        check_dim(dim, "dim")
        if dim % 2:
            raise ValueError(f"RoPE rotates pairs of features: dim must be even, got {dim}")
        if not base > 1:
            raise ValueError(f"base must be > 1, got {base!r}")
        self.dim, self.base = dim, float(base)

    def cos_sin(self, positions: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        work = torch.float64 if dtype == torch.float64 else torch.float32
        i = torch.arange(0, self.dim, 2, device=positions.device, dtype=work)
        inv = self.base ** (-i / self.dim)  # (D/2,)
        ang = positions.to(work).unsqueeze(-1) * inv  # (..., N, D/2)
        ang = torch.cat([ang, ang], dim=-1)  # (..., N, D)
        return ang.cos().to(dtype), ang.sin().to(dtype)

    def forward(self, x: Tensor, *, offset: int | Tensor = 0, positions: Optional[Tensor] = None) -> Tensor:
        if x.shape[-1] != self.dim:
            raise ValueError(f"x has {x.shape[-1]} features per head but RotaryEmbedding was built with dim={self.dim}")
        pos = _positions(x.shape[-2], offset, positions, x.device)
        cos, sin = self.cos_sin(pos, x.dtype)  # (N, D) or (B, N, D)
        if cos.dim() == 3 and x.dim() == 4:
            cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # (B, 1, N, D)
        return apply_rotary(x, cos, sin)

    def extra_repr(self) -> str:
        return f"{self.dim}, base={self.base}"


def alibi_slopes(num_heads: int) -> Tensor:
    """Press et al.'s head slopes: 2^(-8h/n) for n a power of two, else the
    n' = 2^floor(log2 n) slopes plus every other slope of 2n' (their code)."""
    check_dim(num_heads, "num_heads")

    def pow2(n: int) -> list[float]:
        start = 2 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    if math.log2(num_heads).is_integer():
        s = pow2(num_heads)
    else:
        n = 2 ** math.floor(math.log2(num_heads))
        s = pow2(n) + pow2(2 * n)[0::2][: num_heads - n]
    return torch.tensor(s, dtype=torch.float64)


class ALiBi(nn.Module):
    """ALiBi, Press, Smith & Lewis 2021 (arXiv:2108.12409): ``score_ij - m_h · |i − j|``.

    A per-head linear distance penalty instead of position embeddings. Use it
    as a FlexAttention-style ``score_mod`` (computed per tile, no N² tensor)::

        alibi = ALiBi(8)
        attention(q, k, v, causal=True, score_mod=alibi.score_mod(q_offset=0))

    or, where a backend needs a tensor, :meth:`bias` builds (H, L, S).
    ``q_offset`` is the position of the first query when the L queries are
    the last of S keys (cached decoding: ``q_offset = S - L``).
    """

    def __init__(self, num_heads: int, *, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.register_buffer("slopes", alibi_slopes(num_heads).to(device=device, dtype=dtype or torch.float32),
                             persistent=False)

    def score_mod(self, q_offset: int = 0):
        """``score_mod(score, b, h, q_idx, kv_idx)`` adding ``-m_h |q_idx + q_offset - kv_idx|``."""
        slopes = self.slopes

        def alibi(score: Tensor, b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
            dist = (q_idx + q_offset - kv_idx).abs().to(score.dtype)
            return score - slopes.to(score.dtype)[h] * dist

        return alibi

    def bias(self, L: int, S: Optional[int] = None, *, q_offset: int = 0, dtype: torch.dtype = torch.float32) -> Tensor:
        """The (H, L, S) additive bias ``-m_h |i + q_offset - j|``."""
        S = L if S is None else S
        i = torch.arange(q_offset, q_offset + L, device=self.slopes.device)[:, None]
        j = torch.arange(S, device=self.slopes.device)[None, :]
        return -(self.slopes.to(dtype)[:, None, None] * (i - j).abs().to(dtype))  # (H, L, S)

    def extra_repr(self) -> str:
        return f"{self.num_heads}"
