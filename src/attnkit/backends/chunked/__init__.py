"""The ``chunked`` backend: :mod:`.kernel` (online softmax, recomputing backward, any score)
and :mod:`.backend` (capabilities, memory estimate, refusals)."""

from .backend import ChunkedBackend
from .kernel import auto_blocks, chunked_attention

__all__ = ["ChunkedBackend", "auto_blocks", "chunked_attention"]
