"""attnkit.models: models built from the attention layers, in one registry.

* :mod:`~attnkit.models.seq2seq`: the RNN encoder-decoder with attention (Bahdanau et al. 2014, Luong et al. 2015);
* :mod:`~attnkit.models.encoder_decoder`: the Transformer (Vaswani et al. 2017);
* :mod:`~attnkit.models.gpt` and :mod:`~attnkit.models.bert`: the decoder and the encoder alone;
* :mod:`~attnkit.models.vision` (a ResNet with SE / spatial / CBAM blocks, a fully connected net) and
  :mod:`~attnkit.models.glimpse` (the Recurrent Attention Model, Mnih et al. 2014) for images;
* :mod:`~attnkit.models.layers`, :mod:`~attnkit.models.losses` and :mod:`~attnkit.models.decoding`
  (greedy, beam search, sampling for every sequence model) are shared by them.

Each model takes one config dataclass (``GPTConfig`` ...); ``build_model`` rebuilds a model from
the JSON form a checkpoint stores:

>>> from attnkit.models import build_model
>>> model = build_model({"model": "seq2seq", "src_vocab_size": 30, "tgt_vocab_size": 30})
"""

from . import decoding
from .bert import BERT, BERTConfig
from .encoder_decoder import Transformer, TransformerConfig
from .glimpse import RAM, RAMConfig
from .gpt import GPT, GPTConfig
from .registry import MODELS, ModelConfig, build_model, list_models, model_config_for_task, register_model
from .seq2seq import Seq2Seq, Seq2SeqConfig
from .vision import CNN, MLP, CNNConfig, MLPConfig

__all__ = [
    "MODELS",
    "ModelConfig",
    "register_model",
    "build_model",
    "list_models",
    "model_config_for_task",
    "decoding",
    "Seq2Seq",
    "Seq2SeqConfig",
    "Transformer",
    "TransformerConfig",
    "GPT",
    "GPTConfig",
    "BERT",
    "BERTConfig",
    "CNN",
    "CNNConfig",
    "MLP",
    "MLPConfig",
    "RAM",
    "RAMConfig",
]
