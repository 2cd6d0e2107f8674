"""The contract every attention module in :mod:`attnkit.nn` keeps.

Modules are batch-first, like ``batch_first=True`` torch modules:
query (B, L, Dq), keys (B, S, Dk), values (B, S, Dv) -> context (B, L, Dv_out).

Every mechanism returns an :class:`AttentionOutput`, so a model (the seq2seq
decoders, the Transformer blocks) can plug in any registered mechanism:

* ``context``  (B, L, D): the attended summary of the values.
* ``weights``  (B, L, S) for one head, (B, H, L, S) for several; None unless
  asked for (``need_weights=True``) or the mechanism needs them anyway.
* ``log_prob`` (B, L) or (B, H, L): log-probability of the positions a
  stochastic hard attention drew (REINFORCE), else None.
* ``state``: what a recurrent addressing scheme carries to the next decoder
  step (the previous weights of content/NTM attention, a KV cache), else None.

Decoder-style mechanisms (additive, Luong, local, content, hard) take
``forward(query, keys, values=None, *, key_allowed=None, step=None, state=None,
need_weights=False)``: ``key_allowed`` (B, S) bool is True where a key may be
attended (a real token) and False where it may not (padding): DESIGN.md's
polarity, True = attend, the negation of torch's ``key_padding_mask`` (True =
padding; pass ``~key_padding_mask``). ``values`` default to ``keys``, ``step``
is the decoder position t (local-m centres its window there), ``state`` is the
previous step's ``AttentionOutput.state``. A one-step query (B, Dq) gives a
context (B, D) and weights (B, S) (the L axis dropped). Each mechanism's
``output_dim`` attribute is the size D of its context.

A query with no allowed key (every ``key_allowed`` False, or every key of its
row masked) gets the attention context 0 (weights 0, finite zero gradients),
as every backend of :func:`attnkit.functional.attention` gives it; a module's
output is then what its own layers make of that 0 (``MultiHeadAttention``:
``out_proj(0)``, the output bias; Luong's ``combine``: ``tanh(W_c [0; h_t])``).
Never NaN.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

from torch import Tensor

__all__ = ["AttentionOutput"]


class AttentionOutput(NamedTuple):
    context: Tensor
    weights: Optional[Tensor] = None
    log_prob: Optional[Tensor] = None
    state: Any = None
