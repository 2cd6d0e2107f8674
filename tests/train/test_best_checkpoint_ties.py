"""Which validation becomes the best checkpoint: strictly better wins; a tie goes to the later one
unless its token error rate is worse."""

from attnkit.train.loop import _better, _no_worse


def test_strictly_better_and_ties():
    best = {"exact_match": 1.0, "token_error_rate": 0.0}
    assert _better(0.99, 0.98, True) and not _better(0.98, 0.98, True)
    assert _no_worse({"exact_match": 1.0, "token_error_rate": 0.0}, best, "exact_match")  # full tie: later
    assert not _no_worse({"exact_match": 1.0, "token_error_rate": 0.01}, best, "exact_match")  # worse CER
    assert not _no_worse({"exact_match": 0.99, "token_error_rate": 0.0}, best, "exact_match")  # not a tie
    assert _no_worse({"loss": 1.5}, {"loss": 1.5}, "loss")  # no error rate: the tie alone decides
    assert not _no_worse({"exact_match": 1.0}, None, "exact_match")  # nothing to tie with


def test_later_tie_becomes_best(tmp_path):
    """lr 1e-9: the weights barely move, so the validations at steps 2 and 4 tie and the best is step 4."""
    import json

    from attnkit.data import get_task
    from attnkit.models import build_model, model_config_for_task
    from attnkit.train import train

    task = get_task("reverse")
    model = build_model(model_config_for_task("seq2seq", task, hidden_dim=16, embed_dim=8))
    res = train(task, model, steps=4, eval_every=2, seed=0, out_dir=tmp_path / "run", progress=False, lr=1e-9)
    meta = json.loads((tmp_path / "run" / "best.json").read_text())
    assert res["steps"] == 4
    assert meta["train"]["state"]["best_step"] == 4
