"""Context parallelism: ring attention over any score, Ulysses, sequence layouts (layer 3).

* :func:`ring_attention` (Liu et al. 2023, arXiv:2310.01889): each rank's shard of the queries
  attends over every rank's keys as K/V blocks travel the ring; any score (dot family, additive,
  user scores), causal with the zigzag load balance (Brandon et al. 2023, arXiv:2311.09431).
* :func:`ulysses_attention` (Jacobs et al. 2023, DeepSpeed-Ulysses, arXiv:2309.14509): two
  all-to-alls trade the sequence shard for a head shard, full attention on H/P heads.
* :func:`shard_sequence` / :func:`unshard_sequence` / :func:`shard_positions`: the layouts.
* :func:`context_parallel`: run ``MultiHeadAttention`` / ``GPT`` with each rank holding a shard of
  every sequence.

``output_shard = ring_attention(q_shard, k_shard, v_shard, score=..., causal=..., group=...)``
"""

from .context import ContextParallel, average_gradients, context_parallel, current_context_parallel
from .group import RingStats, ring_stats
from .layout import LAYOUTS, shard_positions, shard_sequence, unshard_sequence
from .ring import LSE_BACKENDS, merge_partial, ring_attention
from .ulysses import ulysses_attention

__all__ = [
    "ring_attention",
    "ulysses_attention",
    "shard_sequence",
    "unshard_sequence",
    "shard_positions",
    "merge_partial",
    "context_parallel",
    "current_context_parallel",
    "ContextParallel",
    "average_gradients",
    "ring_stats",
    "RingStats",
    "LAYOUTS",
    "LSE_BACKENDS",
]
