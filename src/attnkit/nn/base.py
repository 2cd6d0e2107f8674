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
``forward(query, keys, values=None, *, key_mask=None, step=None, state=None,
need_weights=False)``: ``key_mask`` (B, S) bool is True at real tokens
(DESIGN.md polarity: True = attend), ``values`` default to ``keys``, ``step``
is the decoder position t (local-m centres its window there), ``state`` is the
previous step's ``AttentionOutput.state``. A one-step query (B, Dq) gives a
context (B, D) and weights (B, S) (the L axis dropped). Each mechanism's
``output_dim`` attribute is the size D of its context.
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
