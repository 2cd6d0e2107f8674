"""attnkit.presets: the one table of tuned defaults, and what --attention means per kind of model."""

from __future__ import annotations

import pytest

from attnkit import presets


def test_train_options_layer_defaults_preset_and_given():
    opts = presets.train_options("dates", "transformer", lr=1e-3, steps=None)
    assert opts["lr"] == 1e-3  # given
    assert opts["steps"] == 500 and opts["eval_examples"] == 500  # the preset (None = not given)
    assert opts["clip"] == presets.TRAIN_DEFAULTS["clip"]  # the defaults
    assert presets.train_options("dates", "seq2seq")["eval_examples"] == 300
    assert presets.train_options("no-such-task", "seq2seq") == dict(presets.TRAIN_DEFAULTS)
    with pytest.raises(TypeError, match="unknown training option.*'lr_max'"):
        presets.train_options("dates", "seq2seq", lr_max=1.0)


def test_default_models():
    assert presets.default_model("numbers") == "seq2seq"
    assert presets.default_model("shakespeare") == "gpt" and presets.default_model("shakespeare-genre") == "bert"
    assert presets.default_model("unknown") == "seq2seq"


def test_attention_means_a_mechanism_for_seq2seq_and_a_score_for_transformers():
    assert presets.resolve_attention("seq2seq", "Luong_General") == {"attention": "luong-general"}
    assert presets.resolve_attention("transformer", "additive") == {"score": "additive"}
    assert presets.resolve_attention("gpt", "local") == {"window": 8}
    assert presets.resolve_attention("bert", "mha") == {}
    with pytest.raises(ValueError, match="unknown attention mechanism 'bahdanu'"):
        presets.resolve_attention("seq2seq", "bahdanu")
    with pytest.raises(ValueError, match="attention='nope' is not a score a gpt layer can use"):
        presets.resolve_attention("gpt", "nope")
    with pytest.raises(ValueError, match="takes no attention option"):
        presets.resolve_attention("mlp", "bahdanau")
    kinds = [row[0] for row in presets.attention_table()]
    assert kinds == ["seq2seq", "transformer, gpt, bert", "cnn"]
    assert presets.resolve_attention("cnn", "Squeeze_Excite") == {"attention": "se"}
    with pytest.raises(ValueError, match="attention='bahdanau' is not an attention a CNN block takes"):
        presets.resolve_attention("cnn", "bahdanau")


def test_model_options_translate_the_flags_per_model_kind():
    expected = {"embed_dim": 32, "hidden_dim": 32, "dropout": 0.0}
    assert presets.model_options("dates", "seq2seq", hidden_dim=32) == expected
    tf = presets.model_options("dates", "transformer", hidden_dim=48, attention="cosine")
    assert tf["dim"] == 48 and tf["score"] == "cosine" and "hidden_dim" not in tf
    with pytest.raises(ValueError, match="hidden_dim=16 and embed_dim=8 differ"):
        presets.model_options("dates", "transformer", hidden_dim=16, embed_dim=8)
    with pytest.raises(ValueError, match="decoder='luong' configures the RNN seq2seq model"):
        presets.model_options("dates", "gpt", decoder="luong")
