"""The model registry: ``@register_model("seq2seq")`` and ``build_model(config)``.

A model class is registered under a name; ``build_model({"model": name, **kw})``
builds ``cls(**kw)``. Every registered model keeps ``.config`` (a JSON-able
dict that rebuilds it through :func:`build_model`) and ``.loss(batch) ->
(loss, metrics)``; sequence-to-sequence models add ``.generate(src,
src_lengths, *, max_len, beam_size=1, length_penalty=1.0)``, language models
``.generate(prompt_ids, *, max_new_tokens, ...)``.

A class may define ``config_for_task(task, **overrides) -> dict`` (a
classmethod) so ``attnkit train TASK --model NAME`` can size it from the
task's vocabularies and defaults.
"""

from __future__ import annotations

import difflib
from typing import Any, Callable

import torch.nn as nn

__all__ = ["MODELS", "register_model", "build_model", "list_models", "model_config_for_task"]

#: model name -> class
MODELS: dict[str, type] = {}


def register_model(*names: str) -> Callable[[type], type]:
    """Class decorator: ``@register_model("seq2seq", "rnn-seq2seq")``."""
    if not names:
        raise ValueError("register_model needs at least one name, e.g. @register_model('seq2seq')")

    def deco(cls: type) -> type:
        for n in names:
            if n in MODELS and MODELS[n] is not cls:
                raise ValueError(f"model {n!r} is already registered to {MODELS[n].__name__}")
            MODELS[n] = cls
        return cls

    return deco


def list_models() -> list[str]:
    return sorted(MODELS)


def _model_class(name: Any) -> type:
    if name not in MODELS:
        close = difflib.get_close_matches(str(name), list(MODELS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown model {name!r}{hint} valid models: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def build_model(config: dict[str, Any]) -> nn.Module:
    """``build_model({"model": "seq2seq", "src_vocab_size": 30, ...})``; the config is not modified."""
    if not isinstance(config, dict) or "model" not in config:
        raise ValueError(f"a model config is a dict with a 'model' key naming one of {', '.join(sorted(MODELS))}")
    cls = _model_class(config["model"])
    kwargs = {k: v for k, v in config.items() if k != "model"}
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise TypeError(f"model {config['model']!r}: {e}") from None


def model_config_for_task(name: str, task: Any, **overrides: Any) -> dict[str, Any]:
    """The config of model ``name`` sized for ``task`` (its vocabularies and tuned defaults)."""
    cls = _model_class(name)
    if not hasattr(cls, "config_for_task"):
        raise ValueError(f"model {name!r} does not say how to size itself for a task; build it with build_model(config)")
    return cls.config_for_task(task, **overrides)
