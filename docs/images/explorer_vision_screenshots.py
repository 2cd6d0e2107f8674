"""Regenerate docs/images/explorer-glimpse.png and explorer-spatial.png: the explorer's vision views for a
Recurrent Attention Model and a CNN with CBAM on translated-digits (32x32), opened offline in Debian's
chromium with every request blocked. The runs come first (a few minutes each on one core):

    attnkit train translated-digits --model ram --minutes 6 --threads 1 --out runs/ram
    attnkit train translated-digits --model cnn --attention cbam --minutes 4 --threads 1 --out runs/cbam
    .venv/bin/python docs/images/explorer_vision_screenshots.py runs/ram runs/cbam

``-`` for either run keeps its pictures as they are (``runs/ram -``: the glimpse view alone).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

HERE = Path(__file__).resolve().parent
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
IMAGES = "37,6,26,0,1,2,3,4"  # 37: a path that walks to the digit


def _page(ctx, report: Path):
    page = ctx.new_page()
    url = report.resolve().as_uri()
    page.route("**/*", lambda r: r.continue_() if r.request.url == url else r.abort())
    page.goto(url)
    page.wait_for_function("window.attnkit && window.attnkit.draws > 0")
    return page


def main(ram_run: str, cnn_run: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        reports = {}
        for name, run in (("ram", ram_run), ("cnn", cnn_run)):
            if run == "-":
                continue
            reports[name] = Path(tmp) / f"{name}.html"
            subprocess.run([sys.executable, "-m", "attnkit", "explore", run, "--images", IMAGES, "--threads", "1",
                            "-o", str(reports[name])], check=True)
        with sync_playwright() as p:
            ctx = p.chromium.launch_persistent_context(str(Path(tmp) / "profile"), executable_path="/usr/bin/chromium",
                                                       headless=True, args=ARGS,
                                                       viewport={"width": 1400, "height": 1000})
            written = []
            if "ram" in reports:
                page = _page(ctx, reports["ram"])
                page.evaluate("window.attnkit.vision.setStep(4)")  # the fourth glimpse, the path so far
                page.locator("main").screenshot(path=str(HERE / "explorer-glimpse.png"))
                written.append("glimpse")
            if "cnn" in reports:
                page = _page(ctx, reports["cnn"])
                page.locator("#spatial-view").screenshot(path=str(HERE / "explorer-spatial.png"))
                page.locator("#channel-view").screenshot(path=str(HERE / "explorer-channels.png"))
                written += ["spatial", "channels"]
            ctx.close()
    print("\n".join(str(HERE / f"explorer-{n}.png") for n in written))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} RAM_RUN_DIR CNN_RUN_DIR (see the docstring for the training commands)")
    main(sys.argv[1], sys.argv[2])
