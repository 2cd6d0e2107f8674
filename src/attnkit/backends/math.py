"""The ``math`` and ``reference`` backends: materialised scores and weights.

``math`` computes in the input dtype (softmax in float32 for half inputs): it
runs everything (every score, normalizer, mask, score_mod, dropout, weights)
at O(B·H·L·S) memory, and is what ``auto`` falls back to. ``reference`` is the
float64 oracle of :mod:`attnkit.functional.reference`, cast back to the input
dtype; ``auto`` never picks it, force it with ``backend="reference"``.
"""

from __future__ import annotations

import torch

from ..functional import reference
from ..functional.spec import AttentionResult, AttentionSpec
from .base import Backend, register_backend


@register_backend
class MathBackend(Backend):
    name = "math"
    priority = 0
    description = "materialised scores and weights in the input dtype; runs everything"

    def forward(self, spec: AttentionSpec) -> AttentionResult:
        return reference.run(spec, dtype=None)


@register_backend
class ReferenceBackend(Backend):
    name = "reference"
    priority = -100
    description = "the float64 oracle (slow; forced by name only)"

    def forward(self, spec: AttentionSpec) -> AttentionResult:
        return reference.run(spec, dtype=torch.float64)
