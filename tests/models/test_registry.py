"""The model registry and the config dataclasses: JSON round trip, clear errors for unknown names
and fields."""

from __future__ import annotations

import dataclasses
import json

import pytest

from attnkit.models import (
    BERT,
    GPT,
    MODELS,
    BERTConfig,
    GPTConfig,
    Seq2Seq,
    Seq2SeqConfig,
    Transformer,
    TransformerConfig,
    build_model,
    list_models,
)


@pytest.mark.parametrize("cls,cfg", [
    (GPT, GPTConfig(23, dim=16, num_heads=2)),
    (BERT, BERTConfig(23, dim=16, num_heads=2, num_classes=3)),
    (Transformer, TransformerConfig(9, 9, dim=16, num_heads=2)),
    (Seq2Seq, Seq2SeqConfig(9, 9, attention="local-m", embed_dim=8, hidden_dim=16,
                            attention_options={"half_width": 2})),
])
def test_config_is_a_dataclass_that_reads_as_its_json(cls, cfg):
    model = cls(cfg)
    assert model.config is cfg and dataclasses.is_dataclass(model.config)
    as_json = json.loads(json.dumps(dict(model.config)))
    assert as_json == {"model": cfg.model, **dataclasses.asdict(cfg)} == model.config
    twin = build_model(as_json)
    assert type(twin) is cls and twin.config == model.config
    assert MODELS[as_json["model"]] is cls


def test_the_shorthand_builds_the_same_config():
    assert GPT(23, dim=16, num_heads=2).config == GPTConfig(vocab_size=23, dim=16, num_heads=2)
    with pytest.raises(TypeError, match="either a GPTConfig or keyword fields"):
        GPT(GPTConfig(23), dim=16)


def test_unknown_fields_and_names_say_what_is_valid():
    with pytest.raises(TypeError, match=r"model 'gpt' has no field 'hiden_dim'; valid fields: vocab_size, block_size"):
        build_model({"model": "gpt", "vocab_size": 9, "hiden_dim": 3})
    with pytest.raises(TypeError, match="model 'transformer'.*tgt_vocab_size"):
        build_model({"model": "transformer", "src_vocab_size": 9})
    with pytest.raises(ValueError, match="unknown model 'gtp'; did you mean 'gpt'"):
        build_model({"model": "gtp"})
    assert {"gpt", "bert", "transformer", "seq2seq", "decoder-only"} <= set(list_models())
