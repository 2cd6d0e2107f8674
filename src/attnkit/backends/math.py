"""The ``math`` and ``reference`` backends: materialised scores and weights.

``math`` computes in the input dtype (softmax in float32 for half inputs): it
runs everything (every score, normalizer, mask, score_mod, dropout, weights)
at O(B·H·L·S) memory, and is what ``auto`` falls back to. ``reference`` is the
float64 oracle of :mod:`attnkit.core.reference`, cast back to the input
dtype; ``auto`` never picks it, force it with ``backend="reference"``.
"""

from __future__ import annotations

import torch

from ..core import reference
from ..core.spec import AttentionResult, AttentionSpec
from .base import Backend, register_backend


def materialised_bytes(spec: AttentionSpec, itemsize: int) -> int:
    """Bytes a materialising path holds: the (B, H, L, S) scores, exp, weights
    (and their saved copies for backward), plus the (B, H, L, S, D) pairwise
    intermediate of a score that is not a dot product (additive's tanh)."""
    pairs = spec.B * spec.H * spec.L * spec.S
    grad = spec.needs_grad
    n = pairs * (6 if grad else 3)
    if not spec.score.lowers_to_dot:
        qp_features = spec.score.params()[0].shape[-1] if spec.score.params() else spec.query.shape[-1]
        n += pairs * qp_features * (3 if grad else 2)
    return n * itemsize


@register_backend
class MathBackend(Backend):
    name = "math"
    priority = 0
    description = "materialised scores and weights in the input dtype; runs everything"
    notes = "memory O(B·H·L·S) (x D for additive); the fallback for every normalizer"

    def memory_bytes(self, spec: AttentionSpec) -> int:
        return materialised_bytes(spec, max(spec.query.element_size(), 4))

    def forward(self, spec: AttentionSpec) -> AttentionResult:
        return reference.run(spec, dtype=None)


@register_backend
class ReferenceBackend(Backend):
    name = "reference"
    priority = -100
    description = "the float64 oracle (slow; forced by name only)"
    notes = "memory O(B·H·L·S) in float64"

    def memory_bytes(self, spec: AttentionSpec) -> int:
        return materialised_bytes(spec, 8)

    def forward(self, spec: AttentionSpec) -> AttentionResult:
        return reference.run(spec, dtype=torch.float64)
