"""attnkit.models: models built from the attention layers, in a registry.

>>> from attnkit.models import build_model
>>> model = build_model({"model": "seq2seq", "src_vocab_size": 30, "tgt_vocab_size": 30})
"""

from .registry import MODELS, build_model, list_models, model_config_for_task, register_model
from . import seq2seq  # noqa: E402,F401  (registers "seq2seq")
from .seq2seq import Seq2Seq  # noqa: E402
from . import transformer  # noqa: E402,F401  (registers "transformer", "gpt", "bert")
from .transformer import BERT, GPT, Transformer  # noqa: E402

__all__ = ["MODELS", "register_model", "build_model", "list_models", "model_config_for_task", "Seq2Seq", "Transformer", "GPT", "BERT"]
