"""docs/ARCHITECTURE.md's "how to add each kind of thing", as code that runs.

Each test adds one thing the way the document says, through its registry only (the second
file the document names is the import line in the package's ``__init__``, which a test does
not need), and checks that the rest of attnkit picks it up with no other table to edit.
"""

from __future__ import annotations

import dataclasses
import sys
import types

import pytest
import torch
import torch.nn as nn

import attnkit
from attnkit.backends import BACKENDS, Backend, register_backend, select_backend
from attnkit.cli import COMMANDS, main
from attnkit.core import reference
from attnkit.core.scores import SCORES, Score, register_score
from attnkit.data import TASKS, Example, Seq2SeqTask, Vocab, get_task, register_task
from attnkit.functional import attention, build_spec
from attnkit.models import MODELS, ModelConfig, build_model, model_config_for_task, register_model
from attnkit.nn.registry import MECHANISMS, register_mechanism
from attnkit.presets import train_options
from attnkit.train import train


def test_a_parameter_free_score_runs_by_name():
    @register_score("neg_l2")
    class NegL2(Score):
        """Negative squared distance: ``score(q, k) = -|q - k|²``."""

        @staticmethod
        def pairwise(qp, kp):
            return -torch.cdist(qp, kp).pow(2)  # (.., L, S)

    try:
        q = torch.tensor([[[0.0, 0.0]]])
        k = v = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
        out, w = attention(q, k, v, score="neg_l2", return_weights=True)
        # scores -1 and -4: weights e^-1 / (e^-1 + e^-4), e^-4 / (...)
        w0 = 1 / (1 + torch.exp(torch.tensor(-3.0)))
        torch.testing.assert_close(w, torch.tensor([[[w0, 1 - w0]]]))
        torch.testing.assert_close(out, w @ v)
    finally:
        SCORES.remove("neg_l2")


def test_a_backend_is_dispatched_by_priority_and_explains_refusals():
    @register_backend
    class Float64Only(Backend):
        name, priority = "test-float64", 1000
        dtypes = (torch.float64,)
        description = "the oracle, for float64 calls"

        def forward(self, spec):
            return reference.run(spec)

    try:
        q = torch.randn(1, 1, 3, 4, dtype=torch.float64)
        spec = build_spec(q, q, q, score="additive", score_params={"w_q": torch.eye(4, dtype=torch.float64),
                                                                     "w_k": torch.eye(4, dtype=torch.float64),
                                                                     "v": torch.ones(4, dtype=torch.float64)})
        assert select_backend(spec).name == "test-float64"
        with pytest.raises(ValueError, match="test-float64.*dtype torch.float32"):
            attention(q.float(), q.float(), q.float(), backend="test-float64")
    finally:
        BACKENDS.remove("test-float64")


def test_a_mechanism_is_created_and_listed():
    @register_mechanism("test-mean", paper="(none: a test)", formula="c = mean_s h_s")
    class MeanAttention(nn.Module):
        def __init__(self, query_dim: int, *, key_dim: int | None = None, value_dim: int | None = None) -> None:
            super().__init__()
            self.output_dim = value_dim or key_dim or query_dim

        def forward(self, query, keys, values=None, **_):
            return (keys if values is None else values).mean(1)

    try:
        m = attnkit.create("test-mean", 8)
        assert "test-mean" in attnkit.list_mechanisms()
        torch.testing.assert_close(m(torch.zeros(2, 8), torch.ones(2, 5, 8)), torch.ones(2, 8))
    finally:
        MECHANISMS.remove("test-mean")


def test_a_model_is_built_from_its_config_dict():
    @dataclasses.dataclass(eq=False)
    class TinyConfig(ModelConfig):
        model = "test-tiny"
        width: int = 3

    @register_model("test-tiny")
    class Tiny(nn.Module):
        config_class = TinyConfig

        def __init__(self, config: TinyConfig) -> None:
            super().__init__()
            self.config = config
            self.linear = nn.Linear(config.width, 1)

    try:
        model = build_model({"model": "test-tiny", "width": 5})
        assert model.linear.in_features == 5
        assert dict(model.config) == {"model": "test-tiny", "width": 5}
    finally:
        MODELS.remove("test-tiny")


def test_a_task_is_built_by_name_and_trains_on_the_default_options(tmp_path):
    @register_task("test-upper")
    def upper(*, seed: int = 0) -> Seq2SeqTask:
        words = ["ab", "ba", "aab", "bba", "abab", "baba"]
        vocab = Vocab([*Vocab.build([]).itos, "a", "b", "A", "B"], kind="char")
        splits = {"train": [Example(w, [w.upper()]) for w in words[:4]],
                  "valid": [Example(words[4], [words[4].upper()])], "test": [Example(words[5], [words[5].upper()])]}
        task = Seq2SeqTask(splits=splits, src_vocab=vocab, tgt_vocab=vocab, options={"seed": seed})
        task.name = "test-upper"
        return task

    try:
        task = get_task("test-upper")
        assert task.splits["test"][0].tgts == ["BABA"]
        assert train_options("test-upper", "seq2seq")["lr"] == 2e-3  # no preset: TRAIN_DEFAULTS
        model = build_model(model_config_for_task("seq2seq", task, embed_dim=8, hidden_dim=8))
        result = train(task, model, steps=2, batch_size=2, eval_every=2, out_dir=tmp_path / "run", progress=False)
        assert result["steps"] == 2 and (tmp_path / "run" / "last.json").exists()
    finally:
        TASKS.remove("test-upper")


def test_a_cli_command_is_one_module_in_commands(capsys, monkeypatch):
    mod = types.ModuleType("attnkit_test_hello")

    def add_parser(sub):
        p = sub.add_parser("hello", help="say hello")
        p.add_argument("name")
        p.set_defaults(func=lambda args: print(f"hello {args.name}"))

    mod.add_parser = add_parser
    monkeypatch.setitem(sys.modules, "attnkit_test_hello", mod)
    monkeypatch.setitem(COMMANDS, "hello", "attnkit_test_hello")
    assert main(["hello", "attention"]) == 0
    assert capsys.readouterr().out == "hello attention\n"
