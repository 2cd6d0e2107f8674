"""Backends: the kernels behind ``attnkit.functional.attention`` (after xformers' fmha).

Each backend declares what it can run as class attributes and explains every
refusal in :meth:`Backend.not_supported_reasons`, including a memory estimate
checked against the free memory of the device (:meth:`Backend.memory_bytes`).
Which backend runs a call is decided in :mod:`attnkit.backends.dispatch`.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..core.registry import Registry
from ..core.spec import AttentionResult, AttentionSpec

__all__ = [
    "Backend",
    "BACKENDS",
    "register_backend",
    "get_backend",
    "available_bytes",
    "format_bytes",
    "captured_grad_tensors",
    "PROBE_ABOVE",
]

#: backend name -> the backend's one instance
BACKENDS: Registry["Backend"] = Registry("backend", hint="`attnkit info` lists them")


def register_backend(cls: type["Backend"]) -> type["Backend"]:
    """Class decorator: instantiate and register a backend under ``cls.name``."""
    if cls.name in BACKENDS:
        raise ValueError(f"backend {cls.name!r} is already registered")
    BACKENDS.add(cls.name, cls())
    return cls


class Backend:
    """A kernel with declared capabilities.

    Capabilities (class attributes): ``devices``, ``dtypes``,
    ``supports_mask`` (bool/float masks), ``supports_causal``,
    ``supports_score_mod``, ``supports_mask_mod``, ``supports_dropout``,
    ``supports_weights`` (can return the (B, H, L, S) weights),
    ``supports_gqa``, ``max_head_dim``, ``softmax_only`` and
    ``dot_scores_only``. ``priority`` places the backend in the order
    ``backend="auto"`` tries them (:func:`attnkit.backends.dispatch.backend_names`).
    """

    name: ClassVar[str] = "base"
    priority: ClassVar[int] = 0
    description: ClassVar[str] = ""
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")
    dtypes: ClassVar[tuple[torch.dtype, ...]] = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
    supports_mask: ClassVar[bool] = True
    supports_causal: ClassVar[bool] = True
    supports_score_mod: ClassVar[bool] = True
    supports_mask_mod: ClassVar[bool] = True
    supports_dropout: ClassVar[bool] = True
    supports_weights: ClassVar[bool] = True
    supports_gqa: ClassVar[bool] = True
    max_head_dim: ClassVar[int | None] = None
    softmax_only: ClassVar[bool] = False
    dot_scores_only: ClassVar[bool] = False

    #: what ``attnkit info`` prints under the backend (memory, algorithm).
    notes: ClassVar[str] = ""

    def memory_bytes(self, spec: AttentionSpec) -> int:
        """Peak extra memory this backend needs for ``spec`` (estimate, bytes); 0 if unknown."""
        return 0

    @classmethod
    def runs_on(cls, x: Tensor) -> bool:
        """Whether ``x``'s device is one of ``devices``; reads ``is_cpu`` / ``is_cuda`` first, which,
        unlike ``x.device.type``, build no string."""
        if x.is_cuda:
            return "cuda" in cls.devices
        if x.is_cpu:
            return "cpu" in cls.devices
        return x.device.type in cls.devices

    def capabilities(self) -> dict[str, object]:
        """The declared capability attributes, for ``attnkit info``."""
        return {
            "devices": list(self.devices),
            "dtypes": [str(d).replace("torch.", "") for d in self.dtypes],
            "scores": "dot family only" if self.dot_scores_only else "any",
            "normalizers": "softmax only" if self.softmax_only else "any",
            "mask": self.supports_mask,
            "causal": self.supports_causal,
            "score_mod": self.supports_score_mod,
            "mask_mod": self.supports_mask_mod,
            "dropout": self.supports_dropout,
            "weights": self.supports_weights,
            "gqa": self.supports_gqa,
            "max_head_dim": self.max_head_dim,
        }

    def unavailable_reason(self) -> str | None:
        """Why this backend cannot run in this environment at all (None if it can)."""
        return None

    def not_supported_reasons(self, spec: AttentionSpec) -> list[str]:
        """Readable reasons this backend cannot run ``spec`` (empty: it can)."""
        reasons: list[str] = []
        why = self.unavailable_reason()
        if why:
            reasons.append(why)
        if spec.device_type not in self.devices:
            reasons.append(f"device {spec.device_type!r} not in {self.devices}")
        if spec.dtype not in self.dtypes:
            reasons.append(f"dtype {spec.dtype} not in {[str(d) for d in self.dtypes]}")
        if spec.mask is not None and not self.supports_mask:
            reasons.append("masks are not supported")
        if spec.causal is not None and not self.supports_causal:
            reasons.append("causal is not supported")
        if spec.score_mod is not None and not self.supports_score_mod:
            reasons.append("score_mod is not supported")
        if spec.mask_mod is not None and not self.supports_mask_mod:
            reasons.append("mask_mod is not supported")
        if spec.dropout_p > 0 and not self.supports_dropout:
            reasons.append("dropout is not supported")
        if spec.return_weights and not self.supports_weights:
            reasons.append("cannot return weights")
        if spec.groups > 1 and not self.supports_gqa:
            reasons.append("grouped-query attention (fewer key heads) is not supported")
        hd = max(spec.query.shape[-1], spec.key.shape[-1], spec.value.shape[-1])
        if self.max_head_dim is not None and hd > self.max_head_dim:
            reasons.append(f"head dim {hd} > max_head_dim {self.max_head_dim}")
        if self.softmax_only and not spec.normalizer.is_softmax:
            reasons.append(f"normalizer {spec.normalizer.name!r} is not softmax")
        if self.dot_scores_only and not spec.score.lowers_to_dot:
            reasons.append(f"score {spec.score.name!r} is not a dot product")
        if not reasons:
            why = self.memory_reason(spec)
            if why:
                reasons.append(why)
        return reasons

    def probes_memory(self, spec: AttentionSpec) -> bool:
        """Whether checking ``spec`` reads the device's free memory, which depends on the moment,
        not on the call: only for calls that could plausibly exhaust it (the read costs a file
        read or a CUDA query), and always while ``ATTNKIT_MEMORY_LIMIT`` is set."""
        return _probes(self.memory_bytes(spec))

    def memory_reason(self, spec: AttentionSpec) -> str | None:
        """Why ``spec`` does not fit in the free memory of its device (None: it fits, or no probe)."""
        need = self.memory_bytes(spec)
        have = available_bytes(spec.device) if _probes(need) else None
        if have is not None and need > have:
            return f"needs about {format_bytes(need)} but {format_bytes(have)} is available on {spec.device}"
        return None

    def forward(self, spec: AttentionSpec) -> AttentionResult:  # pragma: no cover - abstract
        raise TypeError(f"backend {self.name!r} does not define forward()")

    def __repr__(self) -> str:
        return f"<backend {self.name}>"


#: calls estimated below this many bytes skip the free-memory probe.
PROBE_ABOVE = 64 << 20


def _probes(need: int) -> bool:
    return need > PROBE_ABOVE or "ATTNKIT_MEMORY_LIMIT" in os.environ


def captured_grad_tensors(fn: Any) -> list[str]:
    """Names of tensors requiring grad captured in ``fn``'s closure (a backward that recomputes
    ``fn`` outside autograd cannot reach them, so such a call must go to a backend that can)."""
    names = []
    code = getattr(fn, "__code__", None)
    for name, cell in zip(getattr(code, "co_freevars", ()), getattr(fn, "__closure__", None) or ()):
        try:
            val = cell.cell_contents
        except ValueError:
            continue
        if isinstance(val, Tensor) and val.requires_grad:
            names.append(name)
    return names


def available_bytes(device: torch.device) -> int | None:
    """Free memory on ``device`` in bytes (None if unknown).

    CUDA: ``torch.cuda.mem_get_info``. CPU: ``MemAvailable`` of /proc/meminfo
    (Linux); ``ATTNKIT_MEMORY_LIMIT`` (bytes) overrides both, e.g. to test the
    refusal or to leave room for other jobs.
    """
    env = os.environ.get("ATTNKIT_MEMORY_LIMIT")
    if env:
        return int(float(env))
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
    return None


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def get_backend(name: str) -> Backend:
    """The registered backend ``name`` (unknown names raise, listing the valid ones)."""
    return BACKENDS.get(name)
