"""The ``chunked`` backend: the online-softmax kernel of :mod:`.kernel` for any score.

Declares softmax only (the kernel's log-sum-exp is a softmax's), refuses a
``score_mod`` / ``mask_mod`` that captures tensors needing grad (the recomputing
backward cannot reach them), and estimates its memory from the tile sizes
:func:`~attnkit.backends.chunked.kernel.auto_blocks` picks:
O(B·H·(L+S)·D + B·H·block_q·block_k·D) (for the additive score, one tile and one set of
key-side gradient sums per worker thread), plus, with ``return_weights``, what
:func:`~attnkit.backends.weights.weights_bytes` counts for recomputing them.
"""

from __future__ import annotations

import torch

from ...core.spec import AttentionResult, AttentionSpec
from ..additive_tiles import is_plain_additive
from ..base import Backend, captured_grad_tensors, register_backend
from ..weights import weights_bytes
from .kernel import auto_blocks, chunked_attention
from .workers import worker_count

__all__ = ["ChunkedBackend"]


@register_backend
class ChunkedBackend(Backend):
    name = "chunked"
    priority = 50
    description = "online-softmax tiles for any score (additive, user scores) with a recomputing backward"
    notes = "memory O(B·H·(L+S)·D + B·H·block_q·block_k·D); weights recomputed from the log-sum-exp"
    softmax_only = True

    def not_supported_reasons(self, spec: AttentionSpec) -> list[str]:
        reasons = super().not_supported_reasons(spec)
        if torch.is_grad_enabled():
            for name, fn in (("score_mod", spec.score_mod), ("mask_mod", spec.mask_mod)):
                captured = captured_grad_tensors(fn) if fn is not None else []
                if captured:
                    reasons.append(
                        f"{name} captures tensors that require grad ({', '.join(captured)}); the recomputing "
                        "backward cannot reach them (math can)"
                    )
        return reasons

    def memory_bytes(self, spec: AttentionSpec) -> int:
        item = 8 if spec.dtype == torch.float64 else 4
        pair = 1
        if not spec.score.lowers_to_dot:
            ps = spec.score.params()
            pair = ps[0].shape[-1] if ps else spec.query.shape[-1]
        bq, bk = auto_blocks(spec.B, spec.H, spec.L, spec.S, pair)
        feats = max(spec.query.shape[-1], pair) + spec.value.shape[-1]
        linear = spec.B * spec.H * (spec.L + spec.S) * feats * item * 4
        # live (B, H, bq, bk) tiles: scores, scaled, exp and the previous tile's; x3 the (.., D) pair intermediate
        tile = spec.B * spec.H * bq * bk * item * (5 if pair == 1 else 3 * (pair + 4))
        if is_plain_additive(spec.score) and spec.score_mod is None:
            # side-by-side workers (kernel.chunked_attention): a live tile and key-side gradient sums each
            workers = min(worker_count(), max(1, spec.L))
            tile *= workers
            linear += (workers - 1) * spec.B * spec.H * spec.S * feats * item
        # the weights are rebuilt after the kernel, whose tiles are gone by then
        weights = weights_bytes(spec, pair, block_q=bq) if spec.return_weights else 0
        return linear + max(tile, weights)

    def forward(self, spec: AttentionSpec) -> AttentionResult:
        return chunked_attention(spec)
