"""Alignment scores: how much a query matches each key.

Shape legend: B batch, H heads, L target (queries), S source (keys),
E query/key features, D hidden size of an additive score.

Every score splits into two parts so that fast kernels can tile it:

* ``project(q, k) -> (qp, kp)``: per-token work, O(L + S) (a projection, a
  normalisation). Done once, differentiated by ordinary autograd.
* ``pairwise(qp, kp, *params) -> (..., L, S)``: the per-pair formula, pure, so a
  tiled kernel can recompute one (block_q, block_k) tile at a time.

A score whose pairwise part is a plain dot product says so with
``lowers_to_dot = True``; backends that run on dot products (torch SDPA) then
take it. The full score is ``scale * pairwise(project(q, k))``, where ``scale``
defaults to :meth:`Score.default_scale`.

Scores (registry names in brackets):

* [dot] Luong et al. 2015 (arXiv:1508.04025): ``score = q · k``.
* [scaled_dot] Vaswani et al. 2017 (arXiv:1706.03762): ``score = q · k / sqrt(E)``.
* [general, bilinear] Luong et al. 2015: ``score = q W kᵀ``.
* [additive, bahdanau, concat] Bahdanau et al. 2014 (arXiv:1409.0473):
  ``score = vᵀ tanh(W_q q + W_k k + b)``.
* [cosine, content] Graves et al. 2014, Neural Turing Machines
  (arXiv:1410.5401): ``score = β · cos(q, k)``, β >= 0 the key strength.
* [location] Luong et al. 2015: ``score = (W_a q)_s``, ignores the keys.

Add your own with ``@register_score("name")`` on a :class:`Score` subclass.
A score with learned tensors says which with :meth:`Score.parameters` (name ->
shape for H heads), so a layer such as :class:`attnkit.nn.MultiHeadAttention`
creates and initialises them without knowing the score
(:meth:`Score.init_parameters`) and builds it with ``cls(**tensors)``.
"""

from __future__ import annotations

import math
from typing import Callable, ClassVar, Mapping, Optional

import torch
from torch import Tensor

from .registry import Registry

__all__ = [
    "Score",
    "Dot",
    "ScaledDot",
    "General",
    "Additive",
    "Cosine",
    "Location",
    "SCORES",
    "register_score",
    "get_score",
    "score_names",
]

#: score name (aliases included) -> Score subclass
SCORES: Registry[type["Score"]] = Registry("score")


def register_score(*names: str) -> Callable[[type["Score"]], type["Score"]]:
    """Class decorator: register a :class:`Score` subclass under ``names`` (the first is its ``name``)."""

    def deco(cls: type[Score]) -> type[Score]:
        SCORES.add(names[0], cls, *names[1:])
        cls.name = names[0]
        return cls

    return deco


def score_names() -> list[str]:
    """All registered score names, aliases included, sorted."""
    return sorted(SCORES)


class Score:
    """Base class of alignment scores (see the module docstring)."""

    name: ClassVar[str] = "score"
    #: pairwise(qp, kp) is qp @ kp.T: torch SDPA and other dot kernels can run it.
    lowers_to_dot: ClassVar[bool] = False
    #: whether query and key must have the same number of features.
    same_features: ClassVar[bool] = True
    #: whether the score reads the keys at all (location does not).
    uses_keys: ClassVar[bool] = True

    def default_scale(self, q: Tensor, k: Tensor) -> float:
        return 1.0

    @classmethod
    def parameters(
        cls, query_dim: int, key_dim: int, num_heads: int, *, hidden_dim: Optional[int] = None
    ) -> dict[str, tuple[int, ...]]:
        """Constructor argument -> shape of each tensor a layer learns for this score, per head.

        ``query_dim`` / ``key_dim`` are the features per head of q and k, ``num_heads``
        the heads H; ``hidden_dim`` sizes a hidden layer (additive). ``{}``: the score
        learns nothing (it is built from options alone, e.g. ``Cosine(beta=5.0)``).
        """
        _no_hidden_layer(cls, hidden_dim)
        return {}

    @classmethod
    def init_parameters(cls, tensors: Mapping[str, Tensor]) -> None:
        """Initialise the tensors of :meth:`parameters` in place: U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
        fan_in = the last dimension."""
        with torch.no_grad():
            for t in tensors.values():
                bound = 1 / math.sqrt(t.shape[-1])
                t.uniform_(-bound, bound)

    def check(self, q: Tensor, k: Tensor) -> None:
        """Raise ValueError if q (.., L, E) and k (.., S, E') cannot be scored."""
        if self.same_features and self.uses_keys and q.shape[-1] != k.shape[-1]:
            raise ValueError(
                f"key has {k.shape[-1]} features but query has {q.shape[-1]}; the {self.name!r} "
                "score needs equal sizes: pass score='additive' or 'general' (with a weight of "
                f"shape ({q.shape[-1]}, {k.shape[-1]})), or project them to the same size"
            )

    def project(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        return q, k

    def params(self) -> tuple[Tensor, ...]:
        """Tensors that ``pairwise`` reads besides qp and kp (they get gradients)."""
        return ()

    @staticmethod
    def pairwise(qp: Tensor, kp: Tensor, *params: Tensor) -> Tensor:
        return qp @ kp.transpose(-1, -2)  # (..., L, S)

    def __call__(self, q: Tensor, k: Tensor) -> Tensor:
        """Unscaled scores (..., L, S)."""
        qp, kp = self.project(q, k)
        return self.pairwise(qp, kp, *self.params())

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@register_score("dot")
class Dot(Score):
    """Luong et al. 2015 (arXiv:1508.04025) dot score: ``score(q, k) = q · k``."""

    lowers_to_dot = True


@register_score("scaled_dot", "scaled-dot", "sdpa")
class ScaledDot(Score):
    """Vaswani et al. 2017 (arXiv:1706.03762): ``score(q, k) = q · k / sqrt(E)``."""

    lowers_to_dot = True

    def default_scale(self, q: Tensor, k: Tensor) -> float:
        return 1.0 / math.sqrt(q.shape[-1])


def _no_hidden_layer(cls: type[Score], hidden_dim: Optional[int]) -> None:
    if hidden_dim is not None:
        raise ValueError(
            f"hidden_dim={hidden_dim!r} sizes the hidden layer of an additive score; the {cls.name!r} "
            "score has none: drop hidden_dim or use score='additive'"
        )


def _per_head_matrix(w: Tensor, x: Tensor, name: str, in_features: int) -> Tensor:
    """x (B, H, N, in) @ w.T where w is (out, in) or per head (H, out, in) -> (B, H, N, out)."""
    if w.dim() not in (2, 3) or w.shape[-1] != in_features:
        raise ValueError(
            f"{name} has shape {tuple(w.shape)}; expected (out, {in_features}) or "
            f"(H, out, {in_features}) to multiply inputs with {in_features} features"
        )
    if w.dim() == 3 and x.dim() == 4 and w.shape[0] not in (1, x.shape[1]):
        raise ValueError(
            f"{name} has {w.shape[0]} heads but the inputs have {x.shape[1]}; pass one "
            "matrix per head or a single 2-D matrix shared by all heads"
        )
    return torch.matmul(x, w.to(x.dtype).transpose(-1, -2))  # (B, H, N, out)


@register_score("general", "bilinear")
class General(Score):
    """Luong et al. 2015 (arXiv:1508.04025) general score: ``score(q, k) = q W kᵀ``.

    ``weight``: (E_q, E_k) or per head (H, E_q, E_k). Runs as a dot product of
    ``q W`` with ``k``, so every dot-product kernel can take it.
    """

    lowers_to_dot = True
    same_features = False

    def __init__(self, weight: Tensor) -> None:
        if not isinstance(weight, Tensor):
            raise TypeError(f"weight must be a Tensor of shape (E_q, E_k), got {type(weight).__name__}")
        self.weight = weight

    @classmethod
    def parameters(
        cls, query_dim: int, key_dim: int, num_heads: int, *, hidden_dim: Optional[int] = None
    ) -> dict[str, tuple[int, ...]]:
        _no_hidden_layer(cls, hidden_dim)
        return {"weight": (num_heads, query_dim, key_dim)}  # (H, E_q, E_k)

    def check(self, q: Tensor, k: Tensor) -> None:
        w = self.weight
        if w.dim() not in (2, 3) or w.shape[-2] != q.shape[-1] or w.shape[-1] != k.shape[-1]:
            raise ValueError(
                f"general score weight has shape {tuple(w.shape)}; with query features "
                f"{q.shape[-1]} and key features {k.shape[-1]} it must be "
                f"({q.shape[-1]}, {k.shape[-1]}) or (H, {q.shape[-1]}, {k.shape[-1]})"
            )

    def project(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        # q W == q @ (Wᵀ)ᵀ: reuse the per-head helper with Wᵀ of shape (.., E_k, E_q)
        return _per_head_matrix(self.weight.transpose(-1, -2), q, "weight", q.shape[-1]), k

    def __repr__(self) -> str:
        return f"General(weight={tuple(self.weight.shape)})"


@register_score("additive", "bahdanau", "concat")
class Additive(Score):
    """Bahdanau et al. 2014 (arXiv:1409.0473): ``score(q, k) = vᵀ tanh(W_q q + W_k k + b)``.

    ``w_q``: (D, E_q) or (H, D, E_q); ``w_k``: (D, E_k) or (H, D, E_k);
    ``v``: (D,) or (H, D); ``bias``: optional (D,) or (H, D). Luong's "concat"
    score ``vᵀ tanh(W [q; k])`` is the same with W split into W_q and W_k.
    The projections run once per token; only tanh and the dot with v run per
    pair, which is what the chunked and Triton kernels tile.
    """

    same_features = False

    def __init__(self, w_q: Tensor, w_k: Tensor, v: Tensor, bias: Tensor | None = None) -> None:
        for n, t in (("w_q", w_q), ("w_k", w_k), ("v", v)):
            if not isinstance(t, Tensor):
                raise TypeError(f"{n} must be a Tensor, got {type(t).__name__}")
        if w_q.shape[-2] != w_k.shape[-2] or v.shape[-1] != w_q.shape[-2]:
            raise ValueError(
                f"additive score sizes disagree: w_q {tuple(w_q.shape)}, w_k {tuple(w_k.shape)}, "
                f"v {tuple(v.shape)}; w_q is (D, E_q), w_k is (D, E_k) and v is (D,) with one D"
            )
        if bias is not None and bias.shape[-1] != v.shape[-1]:
            raise ValueError(f"bias has shape {tuple(bias.shape)}; expected ({v.shape[-1]},)")
        self.w_q, self.w_k, self.v, self.bias = w_q, w_k, v, bias

    @classmethod
    def parameters(
        cls, query_dim: int, key_dim: int, num_heads: int, *, hidden_dim: Optional[int] = None
    ) -> dict[str, tuple[int, ...]]:
        D = key_dim if hidden_dim is None else hidden_dim
        return {
            "w_q": (num_heads, D, query_dim),  # (H, D, E_q)
            "w_k": (num_heads, D, key_dim),  # (H, D, E_k)
            "v": (num_heads, D),  # (H, D)
        }

    def check(self, q: Tensor, k: Tensor) -> None:
        if self.w_q.shape[-1] != q.shape[-1]:
            raise ValueError(
                f"w_q has shape {tuple(self.w_q.shape)} but query has {q.shape[-1]} features; "
                f"w_q must be (D, {q.shape[-1]})"
            )
        if self.w_k.shape[-1] != k.shape[-1]:
            raise ValueError(
                f"w_k has shape {tuple(self.w_k.shape)} but key has {k.shape[-1]} features; "
                f"w_k must be (D, {k.shape[-1]})"
            )

    def project(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        qp = _per_head_matrix(self.w_q, q, "w_q", q.shape[-1])  # (B, H, L, D)
        kp = _per_head_matrix(self.w_k, k, "w_k", k.shape[-1])  # (B, H, S, D)
        if self.bias is not None:
            b = self.bias if self.bias.dim() == 1 else self.bias.unsqueeze(-2)  # (H, 1, D)
            qp = qp + b
        return qp, kp

    def params(self) -> tuple[Tensor, ...]:
        return (self.v,)

    @staticmethod
    def pairwise(qp: Tensor, kp: Tensor, *params: Tensor) -> Tensor:
        (v,) = params
        t = torch.tanh(qp.unsqueeze(-2) + kp.unsqueeze(-3))  # (..., L, S, D)
        if v.dim() == 1:
            return t @ v  # (..., L, S)
        return (t * v.unsqueeze(-2).unsqueeze(-2)).sum(-1)  # v (H, D) -> (H, 1, 1, D)

    def __repr__(self) -> str:
        return f"Additive(D={self.v.shape[-1]})"


@register_score("cosine", "content", "ntm")
class Cosine(Score):
    """Graves et al. 2014, Neural Turing Machines (arXiv:1410.5401), content addressing.

    ``score(q, k) = β · (q · k) / (|q| |k|)``. ``beta`` (the key strength,
    >= 0) is a number or a tensor broadcastable to (B, H, L), one per query.
    Runs as a dot product of β·q/|q| with k/|k|.
    """

    lowers_to_dot = True

    def __init__(self, beta: float | Tensor = 1.0, *, eps: float = 1e-8) -> None:
        if isinstance(beta, Tensor):
            if beta.numel() and bool((beta.detach() < 0).any()):
                raise ValueError("beta (key strength) must be >= 0; pass softplus(raw_beta) as NTMs do")
        elif not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta >= 0):
            raise ValueError(f"beta (key strength) must be a finite number >= 0, got {beta!r}")
        self.beta = beta
        self.eps = eps

    def project(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        qn = q / q.norm(dim=-1, keepdim=True).clamp_min(self.eps)
        kn = k / k.norm(dim=-1, keepdim=True).clamp_min(self.eps)
        beta = self.beta
        if isinstance(beta, Tensor) and beta.dim() > 0:
            beta = beta.unsqueeze(-1)  # (B, H, L) -> (B, H, L, 1)
        return qn * beta, kn

    def __repr__(self) -> str:
        b = self.beta if not isinstance(self.beta, Tensor) else tuple(self.beta.shape)
        return f"Cosine(beta={b})"


@register_score("location")
class Location(Score):
    """Luong et al. 2015 (arXiv:1508.04025) location score: ``score_s = (W_a q)_s``.

    The weights depend on the query alone. ``weight``: (S_max, E_q) or
    (H, S_max, E_q); the first S rows serve a source of length S. It is a dot
    product of q with the rows of W_a, so dot-product kernels run it.
    """

    lowers_to_dot = True
    uses_keys = False

    def __init__(self, weight: Tensor) -> None:
        if not isinstance(weight, Tensor):
            raise TypeError(f"weight must be a Tensor of shape (S_max, E), got {type(weight).__name__}")
        self.weight = weight

    def check(self, q: Tensor, k: Tensor) -> None:
        w = self.weight
        S = k.shape[-2]
        if w.dim() not in (2, 3) or w.shape[-1] != q.shape[-1] or w.shape[-2] < S:
            raise ValueError(
                f"location score weight has shape {tuple(w.shape)}; with {q.shape[-1]} query "
                f"features and a source of length {S} it must be (S_max, {q.shape[-1]}) with "
                f"S_max >= {S}: build the layer with a larger max_source_len"
            )

    def project(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        S = k.shape[-2]
        w = self.weight[..., :S, :].to(q.dtype)  # (S, E) or (H, S, E)
        if w.dim() == 3:
            w = w.unsqueeze(0)  # (1, H, S, E)
        kp = w.expand(*k.shape[:-1], w.shape[-1])  # (B, H, S, E)
        return q, kp

    def __repr__(self) -> str:
        return f"Location(weight={tuple(self.weight.shape)})"


def get_score(score: str | Score, **params: object) -> Score:
    """A Score from a registry name (with its parameters) or a Score instance."""
    if isinstance(score, Score):
        if params:
            raise ValueError("score is already a Score instance; pass its parameters to its constructor")
        return score
    if not isinstance(score, str):
        raise TypeError(f"score must be a name or a Score instance, got {type(score).__name__}")
    cls = SCORES.get(score)
    try:
        return cls(**params)  # type: ignore[arg-type]
    except TypeError as e:
        raise TypeError(f"score {score!r}: {e}; see help(attnkit.core.scores.{cls.__name__})") from None
