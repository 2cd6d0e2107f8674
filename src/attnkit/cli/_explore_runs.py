"""What ``attnkit explore RUN_DIR`` shows: the attention of an attnkit run, as an :class:`ExplorerData`.

Every attention call of the model is recorded (:func:`attnkit.nn._common.record_specs`) during one
teacher-forced forward per input, and recomputed by the float64 reference (``core.reference.run``),
which gives the weights, the log-sum-exp of each row (the raw scores) and the value vectors:
``α = softmax(scale · score(q, k) + mask)``, ``o = α v``. Per model:

* seq2seq (RNN + Bahdanau/Luong attention): one layer, the alignment of each output over the input;
* transformer: encoder self-attention, then per decoder layer its self- and cross-attention;
* gpt / bert: the self-attention of every layer.

Saliency is gradient x input (Shrikumar et al. 2016, arXiv:1605.01713): for each output token t,
``r_ts = (∂ log p(y_t) / ∂e_s) · e_s`` over the input embeddings e_s (for a classifier, the logit of
the predicted class).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from ..core import reference
from ..data.vocab import BOS, EOS
from ..nn._common import record_specs
from ..viz.explore import AttentionLayer, ExplorerData
from ._common import CliError

__all__ = ["run_explorer_data", "default_texts"]


def _spec_maps(spec: Any) -> tuple[Tensor, Tensor, Tensor]:
    """(weights (H, L, S), lse (H, L), values (H, S, Ev)) of item 0 of one recorded call, in float32."""
    res = reference.run(dataclasses.replace(spec, return_weights=True, dropout_p=0.0))
    v = reference.expand_kv(spec.value, spec.groups)  # (B, H, S, Ev)
    lse = res.lse if res.lse is not None else torch.zeros(res.weights.shape[:-1], dtype=res.weights.dtype)
    return res.weights[0].float(), lse[0].float().clamp_min(-1e30), v[0].float()


def _pad_stack(maps: Sequence[Tensor], shape: Sequence[int]) -> Tensor:
    """Items of different lengths, zero-padded into one (B, *shape) tensor."""
    out = torch.zeros(len(maps), *shape)
    for b, m in enumerate(maps):
        out[b][tuple(slice(0, n) for n in m.shape)] = m
    return out


def _layers(per_item: list[list[tuple[str, str, str, Tensor, Tensor, Tensor]]]) -> list[AttentionLayer]:
    """Per item, per layer (name, query side, key side, weights, lse, values) -> one AttentionLayer per layer."""
    layers = []
    for li, (name, q, k, w0, _, v0) in enumerate(per_item[0]):
        ws = [it[li][3] for it in per_item]
        H = w0.shape[0]
        L = max(w.shape[1] for w in ws)
        S = max(w.shape[2] for w in ws)
        Ev = v0.shape[-1]
        layers.append(AttentionLayer(
            name, _pad_stack(ws, (H, L, S)), query=q, key=k, heads=[f"head {h}" for h in range(H)],
            lse=_pad_stack([it[li][4] for it in per_item], (H, L)),
            values=_pad_stack([it[li][5] for it in per_item], (H, S, Ev))))
    return layers


def _saliency(embedded: Tensor, outputs: Tensor) -> Tensor:
    """Gradient x input: row t = (∂outputs[t] / ∂embedded) · embedded summed over features, (R, N)."""
    rows = []
    for t in range(outputs.shape[0]):
        (g,) = torch.autograd.grad(outputs[t], embedded, retain_graph=True)
        rows.append((g * embedded).sum(-1)[0].detach())  # (N,)
    return torch.stack(rows) if rows else torch.zeros(0, embedded.shape[1])


def _capture_embedding(module: torch.nn.Module) -> tuple[list[Tensor], Any]:
    """A forward hook that keeps the first output of ``module`` (the input embeddings) as a leaf of the graph."""
    seen: list[Tensor] = []

    def hook(_m: Any, _inp: Any, out: Tensor) -> Tensor:
        if seen:
            return out
        leaf = out.detach().requires_grad_(True)
        seen.append(leaf)
        return leaf

    return seen, module.register_forward_hook(hook)


def _teacher_forced(model: Any, emb: torch.nn.Module, forward: Callable[[], Tensor],
                    targets: Tensor) -> tuple[list[Any], Tensor]:
    """Record the attention calls of one forward and the saliency of each target's log-probability."""
    seen, handle = _capture_embedding(emb)
    try:
        with torch.enable_grad(), record_specs() as specs:
            logits = forward()  # (T, V) for the one item
        lp = logits.float().log_softmax(-1).gather(-1, targets[:, None])[:, 0]  # (T,)
        with torch.enable_grad():
            sal = _saliency(seen[0], lp)
    finally:
        handle.remove()
    if not specs:
        raise CliError(f"this {type(model).__name__} model makes no attention call (built without attention), so "
                       "there is nothing to explore; train a model with attention (e.g. --model transformer)")
    return list(specs), sal


def _seq2seq_item(task: Any, model: Any, text: str, out_tokens: list[str], transformer: bool):
    device = next(model.parameters()).device
    ids = task.encode_source(text)
    src = torch.tensor([ids], device=device)  # (1, S)
    lengths = torch.tensor([len(ids)], device=device)
    tgt = [task.tgt_vocab.stoi[t] for t in out_tokens]
    tgt_in = torch.tensor([[BOS, *tgt]], device=device)  # (1, T+1)
    targets = torch.tensor([*tgt, EOS], device=device)  # (T+1,)
    if transformer:
        emb = model.tgt_emb if model.src_emb is None else model.src_emb
        specs, sal = _teacher_forced(model, emb, lambda: model(src, lengths, tgt_in).logits[0], targets)
        n_enc = len(model.encoder)
        out = []
        for i, spec in enumerate(specs):
            w, lse, v = _spec_maps(spec)
            if i < n_enc:
                out.append((f"encoder {i}", "input", "input", w, lse, v))
            else:
                d, cross = divmod(i - n_enc, 2)
                name = f"decoder {d} " + ("cross" if cross else "self")
                out.append((name, "output", "input" if cross else "output", w, lse, v))
        return out, sal
    specs, sal = _teacher_forced(model, model.encoder.embed, lambda: model(src, lengths, tgt_in)[0][0], targets)
    parts = [_spec_maps(s) for s in specs]  # one call per output step, L = 1 each
    w = torch.cat([p[0] for p in parts], dim=1)  # (1, T+1, S)
    lse = torch.cat([p[1] for p in parts], dim=1)  # (1, T+1)
    return [("alignment", "output", "input", w, lse, parts[0][2])], sal


def _self_item(task: Any, model: Any, text: str, name: str):
    device = next(model.parameters()).device
    ids = task.encode_prompt(text)
    if len(ids) > model.block_size:
        raise CliError(f"--text has {len(ids)} characters but the model's context (block_size) is "
                       f"{model.block_size}; shorten it to at most {model.block_size} characters")
    x = torch.tensor([ids], device=device)  # (1, L)
    if name == "bert" and getattr(model, "num_classes", None) is not None:
        seen, handle = _capture_embedding(model.tok_emb)
        try:
            with torch.enable_grad(), record_specs() as specs:
                logits = model(x).logits[0]  # (C,)
            with torch.enable_grad():
                sal = _saliency(seen[0], logits[logits.argmax()][None])
        finally:
            handle.remove()
        rows = [f"class {int(logits.argmax())}"]
    else:
        def forward() -> Tensor:
            return model(x).logits[0]  # (L, V)

        with torch.no_grad():
            targets = forward().argmax(-1)  # (L,): the model's own prediction at each position
        specs, sal = _teacher_forced(model, model.tok_emb, forward, targets)
        itos = task.vocab.itos
        rows = [f"{'next' if name == 'gpt' else 'fill'} @{t}: {itos[int(i)]!r}" for t, i in enumerate(targets)]
    layers = []
    for i, spec in enumerate(specs):
        w, lse, v = _spec_maps(spec)
        layers.append((f"layer {i}", "tokens", "tokens", w, lse, v))
    return layers, sal, [task.vocab.itos[i] for i in ids], rows


def default_texts(task: Any, model: Any) -> list[str]:
    """Inputs to show when --text is not given: two test examples (translation), or the first
    test characters (at most 64, and at most the model's context)."""
    if hasattr(task, "splits"):
        return [ex.src for ex in task.splits["test"][:2]]
    texts = getattr(task, "texts", None)
    if texts and texts.get("test"):
        return [texts["test"][: min(64, getattr(model, "block_size", 64))]]
    raise CliError(f"give the input with --text (task {task.name!r} has no test examples to show)")


def run_explorer_data(task: Any, model: Any, texts: Sequence[str], *, model_name: str) -> ExplorerData:
    """The :class:`ExplorerData` of ``texts`` through a loaded run (see the module docstring)."""
    torch.manual_seed(0)
    model.eval()
    if hasattr(task, "predict") and hasattr(task, "src_vocab"):
        for t in texts:
            bad = task.src_vocab.unknown(task.normalize(t))
            if bad:
                raise CliError(f"--text {t!r} has tokens the model never saw: {', '.join(map(repr, bad))}")
        preds = task.predict(model, list(texts))
        transformer = hasattr(model, "cross_attention_maps")
        per_item, sals, src_toks, out_toks = [], [], [], []
        for text, (toks, _) in zip(texts, preds):
            layers, sal = _seq2seq_item(task, model, text, list(toks), transformer)
            per_item.append(layers)
            sals.append(sal)
            src_toks.append(task.src_vocab.tokens(task.normalize(text)))
            out_toks.append([*toks, "</s>"])
        R = max(s.shape[0] for s in sals)
        N = max(s.shape[1] for s in sals)
        joiner = "" if task.tgt_vocab.kind == "char" else " "
        return ExplorerData(
            tokens={"input": src_toks, "output": out_toks}, layers=_layers(per_item),
            saliency=_pad_stack(sals, (R, N)), saliency_over="input",
            saliency_rows=[[f"{t} @{i}" for i, t in enumerate(o)] + [""] * (R - len(o)) for o in out_toks],
            saliency_label="gradient x input of log p(output)", title=f"{model_name} · {task.name}",
            kind=f"{model_name} run", items=[f"{t} → {joiner.join(p[0])}" for t, p in zip(texts, preds)])
    if not hasattr(task, "encode_prompt") or model_name not in ("gpt", "bert"):
        raise CliError(f"explore does not know how to read the attention of a {model_name} model on the "
                       f"{task.name!r} task; it reads seq2seq, transformer, gpt and bert runs")
    per_item, sals, toks, rows = [], [], [], []
    for text in texts:
        try:
            layers, sal, tk, rw = _self_item(task, model, text, model_name)
        except CliError:
            raise
        except ValueError as e:
            raise CliError(f"--text {text!r}: {str(e).splitlines()[0]}") from None
        per_item.append(layers)
        sals.append(sal)
        toks.append(tk)
        rows.append(rw)
    if not per_item[0]:
        raise CliError(f"this {model_name} model makes no attention call, so there is nothing to explore")
    R = max(s.shape[0] for s in sals)
    N = max(s.shape[1] for s in sals)
    label = "gradient x input of the logit" if len(rows[0]) == 1 else "gradient x input of log p(prediction)"
    return ExplorerData(
        tokens={"tokens": toks}, layers=_layers(per_item), saliency=_pad_stack(sals, (R, N)),
        saliency_rows=[r + [""] * (R - len(r)) for r in rows], saliency_label=label,
        title=f"{model_name} · {task.name}", kind=f"{model_name} run",
        items=[t[:40] + ("…" if len(t) > 40 else "") for t in texts])
