"""Shakespeare tasks: markdown conversion by hand, disjoint deterministic splits, batches, masking, errors."""

from __future__ import annotations

import pytest
import torch

from attnkit.data import TASKS, get_task
from attnkit.data.shakespeare import (
    GENRES,
    MASK_TOKEN,
    ShakespeareGenreTask,
    ShakespeareMLMTask,
    ShakespeareTask,
    load_corpus,
    markdown_to_text,
    plays_dir,
)

PLAY = ("hamlet",)  # one play keeps the tests fast


@pytest.fixture(scope="module")
def lm() -> ShakespeareTask:
    return get_task("shakespeare", plays=PLAY, block_size=16)


def test_registered() -> None:
    assert {"shakespeare", "shakespeare-mlm", "shakespeare-genre"} <= set(TASKS)


def test_markdown_to_text_by_hand() -> None:
    md = (
        "# Hamlet\n\n## ACT I\n\n### SCENE I. Elsinore.\n\n"
        "_Enter BERNARDO and\nFRANCISCO_\n\n"
        "**BERNARDO**  \nWho's there?\n\n"
        "**FRANCISCO**  \nNay, answer me: stand,\\--and unfold  \n__\\[Aside]_  \nyourself\u2014now.\n\n"
        "*Exit Ghost.*\n\n"
        "Long live the king!\n"
    )
    assert markdown_to_text(md) == (
        "BERNARDO:\nWho's there?\n\n"
        "FRANCISCO:\nNay, answer me: stand,--and unfold\nyourself--now.\nLong live the king!\n"
    )


def test_every_play_is_cut_90_5_5_without_overlap() -> None:
    corpus = load_corpus(PLAY)
    text = markdown_to_text((plays_dir() / "tragedies" / "hamlet.md").read_text(encoding="utf-8"))
    parts = [corpus[s][0][1] for s in ("train", "valid", "test")]
    assert "".join(parts) == text  # contiguous, disjoint, nothing lost
    n = len(text)
    assert abs(len(parts[0]) / n - 0.90) < 0.01 and abs(len(parts[1]) / n - 0.05) < 0.01
    assert all(p.startswith(tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ")) for p in parts)  # cut at speech boundaries
    assert corpus["train"][0][0] == "tragedies"


def test_vocab_covers_every_split_and_round_trips(lm: ShakespeareTask) -> None:
    for s in ("train", "valid", "test"):
        assert lm.vocab.decode(lm.data[s][:200].tolist()) == lm.texts[s][:200]
        assert int(lm.data[s].min()) >= 4  # no specials, no UNK inside the text
    assert lm.vocab.itos[4:] == sorted(set("".join(lm.texts.values())))


def test_training_batches_are_shifted_windows_and_seeded(lm: ShakespeareTask) -> None:
    g = torch.Generator().manual_seed(0)
    b = next(lm.batches("train", 5, generator=g))
    assert b.x.shape == b.y.shape == (5, 16)
    assert torch.equal(b.x[:, 1:], b.y[:, :-1])
    data = lm.data["train"]
    starts = [int(i) for i in torch.randint(0, data.numel() - 17, (5,), generator=torch.Generator().manual_seed(0))]
    assert torch.equal(b.x, torch.stack([data[s : s + 16] for s in starts]))
    again = next(lm.batches("train", 5, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(again.x, b.x)


def test_evaluation_windows_tile_the_split_in_order(lm: ShakespeareTask) -> None:
    task = ShakespeareTask(plays=PLAY, block_size=16, eval_tokens=16 * 10)
    xs = torch.cat([b.x for b in task.batches("valid", 4)])
    assert xs.shape == (10, 16)
    assert torch.equal(xs.reshape(-1), task.data["valid"][:160])


def test_evaluate_a_uniform_model_scores_log_vocab(lm: ShakespeareTask) -> None:
    """A model that predicts every character with equal probability has loss ln(V)."""

    class Uniform(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def loss(self, batch):
            logits = torch.zeros(*batch.x.shape, len(lm.vocab)) + self.w
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch.y.flatten())
            return loss, {"loss": float(loss), "tokens": batch.x.numel()}

    m = lm.evaluate(Uniform(), "valid")
    V = len(lm.vocab)
    assert m["loss"] == pytest.approx(torch.log(torch.tensor(float(V))).item(), rel=1e-6)
    assert m["perplexity"] == pytest.approx(V, rel=1e-5)


def test_mlm_masks_15_percent_with_bert_corruption() -> None:
    task = ShakespeareMLMTask(plays=PLAY, block_size=64)
    b = next(task.batches("train", 256, generator=torch.Generator().manual_seed(0)))
    chosen = b.target_mask
    assert abs(chosen.float().mean().item() - 0.15) < 0.01
    assert torch.equal(b.x[~chosen], b.y[~chosen])  # untouched outside the chosen positions
    masked = b.x[chosen] == task.mask_id
    changed = (b.x[chosen] != b.y[chosen]) & ~masked
    assert abs(masked.float().mean().item() - 0.8) < 0.03
    assert changed.float().mean().item() < 0.1 + 0.03
    assert task.vocab.itos[task.mask_id] == MASK_TOKEN
    assert bool(chosen.any(1).all())


def test_genre_windows_come_from_a_play_of_that_genre() -> None:
    task = ShakespeareGenreTask(plays=("hamlet", "the-tempest"), block_size=32)
    b = next(task.batches("train", 16, generator=torch.Generator().manual_seed(0)))
    assert set(b.label.tolist()) <= {GENRES.index("tragedies"), GENRES.index("romances")}
    texts = dict((g, t) for g, t in load_corpus(("hamlet", "the-tempest"))["train"])
    for x, y in zip(b.x, b.label):
        assert task.vocab.decode(x.tolist()) in texts[GENRES[int(y)]]
    evals = [b.x for b in task.batches("valid", 8)]
    assert torch.equal(torch.cat(evals), torch.cat([b.x for b in task.batches("valid", 8)]))  # fixed draw


def test_bad_input(lm: ShakespeareTask) -> None:
    with pytest.raises(ValueError, match="never saw: '€'"):
        lm.encode_prompt("ROMEO: €5")
    assert lm.vocab.decode(lm.encode_prompt("ROMEO:")) == "ROMEO:"
    with pytest.raises(ValueError, match="matches no play"):
        ShakespeareTask(plays=("hamlet-the-musical",))
    with pytest.raises(ValueError, match="split must be one of"):
        next(lm.batches("dev", 2))
    with pytest.raises(ValueError, match="block_size"):
        ShakespeareTask(plays=PLAY, block_size=1)


def test_repr_names_the_task_and_its_options(lm: ShakespeareTask) -> None:
    """What ``attnkit train`` prints for the task (it printed ``<...Task object at 0x...>``)."""
    assert repr(lm) == "ShakespeareTask('shakespeare', block_size=16, plays=['hamlet'], eval_tokens=65536)"
