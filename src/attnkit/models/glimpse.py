"""The Recurrent Attention Model: Mnih, Heess, Graves & Kavukcuoglu 2014, "Recurrent Models of Visual
Attention" (arXiv:1406.6247); the multi-resolution retina of Larochelle & Hinton 2010.

At each of T glimpses the model looks at a small part of the image and decides where to look next::

    ρ(x, l_t)   k patches centred on l_t, of sides p, 2p, ..., 2^(k-1) p, each averaged down to p x p
    g_t = ReLU(W_g ReLU(W_ρ ρ(x, l_t)) + W_l' ReLU(W_l l_t))      glimpse network
    h_t = core(h_{t-1}, g_t)                                      LSTM (or ReLU RNN) core
    l_{t+1} ~ N(tanh(W_μ [h_t; ρ(x, l_t)]), σ²)                   location policy (the paper's: W_μ h_t)
    b_t = w_bᵀ h_t + c                                            learned baseline
    ŷ = softmax(W_c h_T)                                          classifier at the last step

Hard attention is not differentiable: the classifier, core and glimpse network learn by
cross-entropy, the location network by REINFORCE (Williams 1992) with reward R = 1 for the right
class: ``∇ ≈ Σ_t (R - b_t) ∇ log π(l_{t+1} | h_t)``; the baseline b_t is fit by ``(R - b_t)²``. The
drawn locations are detached (no gradient flows from a glimpse back into where it was taken) and the
baseline reads ``h_t`` detached. With ``detach_policy`` (the default) the policy reads ``h_t`` detached
too, so the only gradient the location network gets is REINFORCE's and REINFORCE trains nothing else;
``detach_policy=False`` is the paper's formulation, where REINFORCE's gradient also trains the core and
the glimpse network (on these canvases it disturbs the classifier more than it helps the policy:
benchmarks/RESULTS.md). The first glimpse is at the centre; at evaluation the policy takes its mean.

The location network reads the core state and, past the glimpse network, the retina's pixels of the
glimpse just taken (``locator_input="state+retina"``, the default; ``"state"`` is the paper's W_μ h_t).
The core is trained by the classifier alone and keeps little of where the digit is (a linear readout of
h_1 explains about a third of the digit's position), so a linear policy on h_t must wait for REINFORCE
to find what little is there; on the retina's coarsest scale the digit's position is nearly a linear
function of the pixels, and the policy learns it in a fraction of the steps (benchmarks/RESULTS.md).

``locator="spatial"`` replaces W_μ by a score for each pixel of the coarsest patch and looks at their
soft-argmax (the spatial soft-argmax of Levine et al. 2016, arXiv:1504.00702)::

    s_t = conv(ReLU(conv(ρ_{k-1}(x, l_t)))) + W_s h_t        (p·p scores: two 3x3 convolutions, 8 channels)
    μ_t = l_t + Σ_ab softmax(s_t)_ab · o_ab                  o_ab: pixel (a, b)'s offset from the patch centre

A convolution finds a digit-like blob wherever it sits on the patch; a linear map on the pixels must learn
every position apart. With perfect locations (every glimpse after the first on the digit) the glimpse
network and core reach 98.5 % on cluttered digits in 2,100 steps, the linear policy 58 % in 1,700: the
policy is what RAM has to learn; the spatial one reaches 85 % by 1,500 steps, the linear one 56 %
(benchmarks/RESULTS.md).

``step_loss`` w adds the classifier's cross-entropy at every glimpse before the last, averaged over them
(deep supervision): ``L = CE(ŷ_T) + w · mean_t CE(W_c h_t) + REINFORCE``; the prediction is still the
last glimpse's. It gives the glimpse network a gradient from each glimpse, and makes the explorer's
probabilities after each glimpse meaningful.

``policy="random"`` is the paper's "random glimpses" baseline: every later location uniform on the image.

Locations are (x, y) in [-1, 1]² (``F.grid_sample``'s convention: -1 = the left / top edge of the
image, +1 = the right / bottom edge). Shape legend: B batch, C channels, S image side, T glimpses,
k scales, p patch side, D hidden.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..nn.hard import LearnedBaseline
from .layers import check_int
from .losses import cross_entropy_metrics
from .registry import make_config, register_model
from .vision import _ImageConfig, check_images, image_fields

__all__ = ["RAM", "RAMConfig", "Retina", "GlimpseOutput", "POLICIES", "CELLS", "location_to_pixels"]

POLICIES = ("learned", "random")
CELLS = ("lstm", "rnn")
LOCATOR_INPUTS = ("state+retina", "state")
LOCATORS = ("linear", "spatial")


def location_to_pixels(loc: Tensor, image_size: int) -> Tensor:
    """Locations in [-1, 1] -> pixel coordinates of the centre (0 = the middle of the first pixel)."""
    return ((loc + 1) * image_size - 1) / 2


class Retina(nn.Module):
    """Larochelle & Hinton's fovea: ``scales`` square patches centred on ``loc``, of sides ``patch_size · 2^i``,
    each resized down to ``patch_size``; outside the image is black. No parameters.

    Scale i reads the image average-pooled by f = 2^i (an image pyramid, built once per image): its p x p
    pixels are bilinear samples of the pooled image at ``loc + (a - (p-1)/2) · f`` pixels, a = 0..p-1, so
    pixel (a, b) of patch i is the mean of the f x f block of the image it covers: exactly so where every
    block lies on its pooling grid (the canvas centre, and any shift by a multiple of 2^(k-1) pixels from
    it), and the bilinear mix of the neighbouring block means in between. That is k·p² samples a glimpse
    instead of Σ(p·2^i)² (192 against 1,344 at p=8, k=3; ``benchmarks/probe_ram_retina.py``).

    ``forward(x (B, C, S, S), loc (B, 2)) -> (B, k, C, p, p)``; ``pyramid(x)`` and ``sample(pyramid, loc)``
    split it, for a model that takes several glimpses of one image.
    """

    def __init__(self, image_size: int, patch_size: int, scales: int) -> None:
        super().__init__()
        check_int("image_size", image_size)
        check_int("patch_size", patch_size)
        check_int("scales", scales)
        if patch_size > image_size:
            raise ValueError(f"patch_size={patch_size} is larger than the canvas (image_size={image_size}); "
                             f"use patch_size <= {image_size}")
        largest = patch_size * 2 ** (scales - 1)
        if largest > image_size:
            fits = max(s for s in range(1, scales + 1) if patch_size * 2 ** (s - 1) <= image_size)
            raise ValueError(f"the largest glimpse (patch_size·2^(scales-1) = {largest} pixels) does not fit the "
                             f"{image_size}x{image_size} canvas; use scales <= {fits} or patch_size <= "
                             f"{image_size // 2 ** (scales - 1) or 1}, or a larger canvas")
        self.image_size, self.patch_size, self.scales = image_size, patch_size, scales
        self.sizes = [patch_size * 2 ** i for i in range(scales)]
        offsets = []
        for i in range(scales):  # the p x p sampling points of each scale around its centre, 2^i pixels apart
            offs = (torch.arange(patch_size, dtype=torch.float32) - (patch_size - 1) / 2) * (2 ** i * 2 / image_size)
            gy, gx = torch.meshgrid(offs, offs, indexing="ij")
            offsets.append(torch.stack([gx, gy], -1))  # (p, p, 2) as (x, y)
        self.register_buffer("offsets", torch.stack(offsets), persistent=False)  # (k, p, p, 2)

    def pyramid(self, x: Tensor) -> list[Tensor]:
        """The image average-pooled by 1, 2, ..., 2^(k-1): k tensors (B, C, S/2^i, S/2^i); a side that 2^i
        does not divide is pooled adaptively (blocks of about 2^i pixels, the same extent)."""
        S = x.shape[-1]
        return [x] + [F.adaptive_avg_pool2d(x, max(1, round(S / 2 ** i))) for i in range(1, self.scales)]

    def sample(self, pyramid: list[Tensor], loc: Tensor) -> Tensor:
        """The glimpse at ``loc`` (B, 2) from ``pyramid(x)``: (B, k, C, p, p)."""
        B = pyramid[0].shape[0]
        if not isinstance(loc, Tensor) or loc.shape != (B, 2):
            got = tuple(loc.shape) if isinstance(loc, Tensor) else type(loc).__name__
            raise ValueError(f"loc must be (B, 2) = ({B}, 2) locations (x, y) in [-1, 1], got {got}")
        if not bool(torch.isfinite(loc).all()) or float(loc.abs().max()) > 1 + 1e-6:
            raise ValueError("loc must lie in [-1, 1] (the glimpse's centre inside the canvas); clamp it, "
                             f"got values up to {float(loc.abs().max()):.3g}")
        x = pyramid[0]
        centre = loc.to(x.dtype).view(B, 1, 1, 2)
        offsets = self.offsets.to(x.device, x.dtype)  # (k, p, p, 2)
        return torch.stack([F.grid_sample(level, centre + offsets[i], mode="bilinear", padding_mode="zeros",
                                          align_corners=False)  # (B, C, p, p)
                            for i, level in enumerate(pyramid)], 1)  # (B, k, C, p, p)

    def forward(self, x: Tensor, loc: Tensor) -> Tensor:
        return self.sample(self.pyramid(x), loc)


class GlimpseOutput(NamedTuple):
    logits: Tensor  # (B, K) the classifier at the last glimpse
    locations: Tensor  # (B, T, 2) where each glimpse looked, (x, y) in [-1, 1]
    log_prob: Optional[Tensor] = None  # (B, T-1) log π(l_{t+1} | h_t) of the drawn locations (training, learned)
    baseline: Optional[Tensor] = None  # (B, T-1) b_t
    step_logits: Optional[Tensor] = None  # (B, T-1, K) the classifier at glimpses 1..T-1 (training, step_loss > 0)


@dataclass(eq=False)
class RAMConfig(_ImageConfig):
    """``glimpses`` T; ``patch_size`` p and ``scales`` k of the retina; ``location_std`` σ of the policy
    (in units of half the image side); ``glimpse_dim`` the units of the "what" and "where" layers;
    ``hidden_dim`` D of the glimpse vector and the core; ``cell`` ``lstm`` or ``rnn`` (ReLU, the paper's
    core for MNIST); ``policy`` ``learned`` or ``random`` (the baseline); ``reinforce_weight`` scales the
    REINFORCE and baseline terms against the cross-entropy; ``detach_policy`` keeps REINFORCE's gradient
    in the location network (False: it reaches the core and the glimpse network, as in the paper);
    ``locator_input`` what the location network reads: ``state+retina`` [h_t; ρ(x, l_t)] (the default),
    ``state`` h_t alone (the paper's); ``locator`` ``linear`` (W_μ) or ``spatial`` (the soft-argmax of
    convolution scores on the coarsest patch, plus W_s h_t); ``step_loss`` the weight of the classifier's
    cross-entropy at the earlier glimpses (0: the last glimpse's alone, the paper's)."""

    model = "ram"

    image_size: int = 32
    glimpses: int = 6
    patch_size: int = 8
    scales: int = 3
    location_std: float = 0.15
    glimpse_dim: int = 128
    hidden_dim: int = 256
    cell: str = "lstm"
    policy: str = "learned"
    reinforce_weight: float = 1.0
    detach_policy: bool = True
    locator_input: str = "state+retina"
    locator: str = "linear"
    step_loss: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("glimpses", "glimpse_dim", "hidden_dim"):
            check_int(name, getattr(self, name))
        Retina(self.image_size, self.patch_size, self.scales)  # the patch and glimpse sizes fit the canvas
        if not isinstance(self.location_std, (int, float)) or not 0 < self.location_std <= 2:
            raise ValueError(f"location_std must be in (0, 2] (half image sides), got {self.location_std!r}")
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, got {self.cell!r}")
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)} (random: the random-glimpse "
                             f"baseline), got {self.policy!r}")
        if not isinstance(self.reinforce_weight, (int, float)) or self.reinforce_weight < 0:
            raise ValueError(f"reinforce_weight must be >= 0, got {self.reinforce_weight!r}")
        if not isinstance(self.detach_policy, bool):
            raise TypeError(f"detach_policy must be True or False, got {self.detach_policy!r}")
        if not isinstance(self.step_loss, (int, float)) or self.step_loss < 0:
            raise ValueError(f"step_loss must be >= 0 (0: the classifier is trained at the last glimpse only), "
                             f"got {self.step_loss!r}")
        if self.locator_input not in LOCATOR_INPUTS:
            raise ValueError(f"locator_input must be one of {', '.join(LOCATOR_INPUTS)} (state: the paper's "
                             f"location network on h_t alone), got {self.locator_input!r}")
        if self.locator not in LOCATORS:
            raise ValueError(f"locator must be one of {', '.join(LOCATORS)}, got {self.locator!r}")
        if self.locator == "spatial" and self.locator_input != "state+retina":
            raise ValueError("locator='spatial' scores the retina's coarsest patch, so it needs "
                             "locator_input='state+retina'; use locator='linear' for the paper's W_μ h_t")


@register_model("ram", "recurrent-attention")
class RAM(nn.Module):
    """The Recurrent Attention Model (see the module docstring).

    ``RAM(RAMConfig(...))`` or ``RAM(image_size, glimpses=4, ...)``. ``forward(x (B, C, S, S), *,
    generator=None) -> GlimpseOutput``; ``generator`` draws the locations (training, or the random policy).
    """

    config_class = RAMConfig

    def __init__(self, config: RAMConfig | int, /, **fields: Any) -> None:
        super().__init__()
        cfg = make_config(RAMConfig, config, "image_size", fields)
        self.config = cfg
        self.retina = Retina(cfg.image_size, cfg.patch_size, cfg.scales)
        G, D = cfg.glimpse_dim, cfg.hidden_dim
        self.what = nn.Linear(cfg.scales * cfg.in_channels * cfg.patch_size ** 2, G)  # W_ρ
        self.where = nn.Linear(2, G)  # W_l
        self.what_out, self.where_out = nn.Linear(G, D), nn.Linear(G, D)  # W_g, W_l'
        self.core = nn.LSTMCell(D, D) if cfg.cell == "lstm" else nn.RNNCell(D, D, nonlinearity="relu")
        rho = cfg.scales * cfg.in_channels * cfg.patch_size ** 2  # the retina's k·C·p·p pixels
        if cfg.locator == "spatial":  # a score for each pixel of the coarsest patch, from its pixels and h_t
            p = cfg.patch_size
            self.locator = nn.Sequential(nn.Conv2d(cfg.in_channels, 8, 3, padding=1), nn.ReLU(),
                                         nn.Conv2d(8, 1, 3, padding=1))
            self.locator_state = nn.Linear(D, p * p)
        else:
            self.locator = nn.Linear(D + (rho if cfg.locator_input == "state+retina" else 0), 2)  # W_μ
        self.baseline = LearnedBaseline(D)
        self.classifier = nn.Linear(D, cfg.num_classes)

    @classmethod
    def config_for_task(cls, task: Any, **fields: Any) -> dict[str, Any]:
        """Sized for an image task; on an image under 32x32 the retina shrinks to patches of a quarter of
        its side, at the scales that fit (16x16: 4, 8, 16 pixels). ``patch_fraction`` f (not a config field;
        the presets' for translated digits: 1/8) sizes the fine patch as a fraction of the image side on any
        canvas instead: p = round(f·S) pixels at every scale k that fits, p·2^(k-1) <= S (32x32: 4, 8, 16,
        32, the widest the whole canvas; 64x64: 8, 16, 32, 64; f = 3/16 on 32x32: 6, 12, 24)."""
        cfg = image_fields(task, "ram")
        S = task.image_size
        fraction = fields.pop("patch_fraction", None)
        if fraction is not None and (not isinstance(fraction, (int, float)) or not 0 < fraction <= 1):
            raise ValueError(f"patch_fraction must be in (0, 1] (the fine patch's side over the image's), "
                             f"got {fraction!r}")
        if fraction is not None or S < 32:
            p = max(1, round(S * fraction) if fraction is not None else S // 4)
            cfg.update(patch_size=p, scales=(S // p).bit_length())  # the scales that fit: p·2^(k-1) <= S
        cfg.update({k: v for k, v in fields.items() if v is not None})
        RAMConfig.from_dict(cfg)
        return cfg

    def glimpse(self, x: Tensor, loc: Tensor) -> Tensor:
        """g_t (B, D) of the glimpse at ``loc`` (B, 2)."""
        return self._glimpse(self.retina.pyramid(x), loc)[0]

    def _glimpse(self, pyramid: list[Tensor], loc: Tensor) -> tuple[Tensor, Tensor]:
        """g_t (B, D) and the retina's pixels ρ (B, k·C·p·p) of the glimpse at ``loc``, from ``retina.pyramid``."""
        rho = self.retina.sample(pyramid, loc).flatten(1)  # (B, k·C·p·p)
        g = torch.relu(self.what_out(torch.relu(self.what(rho))) + self.where_out(torch.relu(self.where(loc))))
        return g, rho

    def _next_location(self, h: Tensor, rho: Tensor, loc: Tensor,
                       generator: Optional[torch.Generator]) -> tuple[Tensor, Optional[Tensor]]:
        """l_{t+1} (B, 2), detached, and its log-probability (B,) when it was drawn from the learned policy."""
        if self.config.policy == "random":
            u = torch.rand(h.shape[0], 2, generator=generator, device=h.device, dtype=h.dtype)
            return 2 * u - 1, None
        cfg = self.config
        state = h.detach() if cfg.detach_policy else h
        if cfg.locator == "spatial":
            B, k, C, p = h.shape[0], cfg.scales, cfg.in_channels, cfg.patch_size
            coarse = rho.view(B, k, C, p, p)[:, -1]  # (B, C, p, p): the widest patch
            scores = self.locator(coarse).flatten(1) + self.locator_state(state)  # (B, p·p)
            where = self.retina.offsets[-1].reshape(p * p, 2).to(scores.dtype)  # (p·p, 2) each pixel's offset
            mu = (loc + scores.softmax(-1) @ where).clamp(-1, 1)  # (B, 2): the soft-argmax of the scores
        else:
            if cfg.locator_input == "state+retina":
                state = torch.cat([state, rho], 1)  # (B, D + k·C·p·p); the pixels carry no gradient
            mu = torch.tanh(self.locator(state))  # (B, 2)
        if not self.training:
            return mu.detach(), None
        std = cfg.location_std
        noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        loc = (mu.detach() + std * noise).clamp(-1, 1)
        log_prob = torch.distributions.Normal(mu, std).log_prob(loc).sum(-1)  # (B,)
        return loc, log_prob

    def forward(self, x: Tensor, *, generator: Optional[torch.Generator] = None) -> GlimpseOutput:
        cfg = self.config
        check_images(x, channels=cfg.in_channels, size=cfg.image_size, who="ram")
        if cfg.policy == "random" and not self.training and generator is None:
            generator = torch.Generator(device=x.device).manual_seed(0)  # the same random glimpses every evaluation
        B, D = x.shape[0], cfg.hidden_dim
        loc = x.new_zeros(B, 2)  # the first glimpse: the centre
        h = x.new_zeros(B, D)
        c = x.new_zeros(B, D)
        locs, log_probs, baselines, step_logits = [loc], [], [], []
        classify_steps = self.training and cfg.step_loss > 0
        pyramid = self.retina.pyramid(x)  # once: every glimpse samples it
        for t in range(cfg.glimpses):
            g, rho = self._glimpse(pyramid, loc)  # (B, D), (B, k·C·p·p)
            if cfg.cell == "lstm":
                h, c = self.core(g, (h, c))
            else:
                h = self.core(g, h)
            if t == cfg.glimpses - 1:
                break
            if classify_steps:
                step_logits.append(self.classifier(h))  # (B, K)
            loc, lp = self._next_location(h, rho, loc, generator)
            locs.append(loc)
            if lp is not None:
                log_probs.append(lp)
                baselines.append(self.baseline(h.detach()))  # (B,)
        lp = torch.stack(log_probs, 1) if log_probs else None  # (B, T-1)
        b = torch.stack(baselines, 1) if baselines else None  # (B, T-1)
        sl = torch.stack(step_logits, 1) if step_logits else None  # (B, T-1, K)
        return GlimpseOutput(self.classifier(h), torch.stack(locs, 1), lp, b, sl)  # logits (B, K), locations (B, T, 2)

    def loss(self, batch: Any) -> tuple[Tensor, dict[str, float]]:
        """Cross-entropy + REINFORCE with the learned baseline (reward 1 for the right class)."""
        out = self(batch.x)
        loss, m = cross_entropy_metrics(out.logits, batch.label, accuracy=not self.training)
        reward = (out.logits.detach().argmax(-1) == batch.label).to(out.logits.dtype)  # (B,)
        m["reward"] = float(reward.mean())
        if out.step_logits is not None:  # the classifier at every earlier glimpse too
            K = out.step_logits.shape[-1]
            steps_ce = F.cross_entropy(out.step_logits.reshape(-1, K),  # (B·(T-1), K)
                                       batch.label.repeat_interleave(out.step_logits.shape[1]))
            loss = loss + self.config.step_loss * steps_ce
            m["step_loss"] = float(steps_ce.detach())
        if out.log_prob is not None:
            per_step = reward.unsqueeze(1).expand_as(out.log_prob)  # (B, T-1): R for every decision
            advantage = (per_step - out.baseline).detach()
            policy = -(advantage * out.log_prob).sum(1).mean()  # REINFORCE over the trajectory
            fit = (per_step - out.baseline).square().mean()  # the baseline's regression to R
            loss = loss + self.config.reinforce_weight * (policy + fit)
            m["baseline_error"] = float(fit.detach())
        m["loss"] = float(loss.detach())
        return loss, m
