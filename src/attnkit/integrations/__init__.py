"""attnkit inside other libraries' models.

* :mod:`attnkit.integrations.huggingface`: an attention implementation named ``"attnkit"`` for
  Hugging Face transformers (``AttentionInterface`` + ``AttentionMaskInterface``), a loader for
  local models (:func:`~attnkit.integrations.huggingface.load_model`) and a recorder of any
  layer's / head's / row's attention weights
  (:func:`~attnkit.integrations.huggingface.record`).

The integrations import their third-party library (``transformers``) only when called, through
:func:`attnkit.core.optional.require`: ``import attnkit.integrations.huggingface`` works without
it, and the first call names the extra to install (``pip install 'attnkit[hf]'``).
"""

from . import huggingface

__all__ = ["huggingface"]
