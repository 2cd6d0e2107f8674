"""RAM's retina: the image pyramid (``Retina``: k·p² bilinear samples a glimpse) against sampling every
pixel of each patch and averaging its blocks (the retina before 2026-12-02, here as ``PerPixelRetina``),
alone and inside a training step of the presets' RAM on translated digits (batch 256, 6 glimpses).

    .venv/bin/python benchmarks/probe_ram_retina.py --threads 1

Prints the median of ``--repeats`` x 20 calls (ms), the largest difference of the two retinas on the
pooling grid (should be float rounding) and off it, and ``os.getloadavg()``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from attnkit.data import get_task
from attnkit.models import build_model, model_config_for_task
from attnkit.models.glimpse import Retina
from attnkit.presets import model_options
from attnkit.train import make_optimizer


class PerPixelRetina(Retina):
    """Every pixel of each (p·2^i)² patch sampled with one ``F.grid_sample``, then average-pooled by 2^i."""

    def pyramid(self, x: Tensor) -> list[Tensor]:
        return [x]  # no pyramid: every glimpse samples the image itself

    def sample(self, pyramid: list[Tensor], loc: Tensor) -> Tensor:
        x = pyramid[0]
        B, S, p = x.shape[0], x.shape[-1], self.patch_size
        grids = []
        for size in self.sizes:
            offs = (torch.arange(size, dtype=x.dtype) - (size - 1) / 2) * (2 / S)
            gy, gx = torch.meshgrid(offs, offs, indexing="ij")
            grids.append(torch.stack([gx, gy], -1).view(1, 1, size * size, 2))  # (1, 1, s², 2)
        flat = F.grid_sample(x, loc.view(B, 1, 1, 2) + torch.cat(grids, 2), align_corners=False)  # (B, C, 1, Σs²)
        patches = flat.split([s * s for s in self.sizes], dim=3)
        return torch.stack([F.avg_pool2d(q.view(B, -1, s, s), s // p) for q, s in zip(patches, self.sizes)], 1)


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(20):
            fn()
        times.append((time.perf_counter() - t) / 20 * 1e3)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    torch.manual_seed(0)
    x, loc = torch.rand(256, 1, 32, 32), torch.rand(256, 2) * 2 - 1
    new, old = Retina(32, 8, 3), PerPixelRetina(32, 8, 3)
    grid = torch.randint(-3, 4, (256, 2)).float() * (8 / 32)  # shifts of 4 px: every block on its grid
    print(f"on the pooling grid: max |pyramid - per-pixel| = {float((new(x, grid) - old(x, grid)).abs().max()):.2g}; "
          f"off it: {float((new(x, loc) - old(x, loc)).abs().max()):.2g} (pixels in [0, 1])")
    pyr = new.pyramid(x)
    print(f"per-pixel retina, one glimpse: {median_ms(lambda: old(x, loc), args.repeats):.2f} ms; pyramid: "
          f"{median_ms(lambda: new.sample(pyr, loc), args.repeats):.2f} ms a glimpse + "
          f"{median_ms(lambda: new.pyramid(x), args.repeats):.2f} ms for the pyramid, once per image")
    task = get_task("translated-digits", seed=0)
    net = build_model(model_config_for_task("ram", task, **model_options(task.name, "ram")))
    opt = make_optimizer(list(net.parameters()), lr=1e-3)
    batch = next(iter(task.batches("train", 256, generator=torch.Generator().manual_seed(0))))

    def step() -> None:
        loss, _ = net.loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for name, retina in (("pyramid", new), ("per-pixel", old)):
        net.retina = retina
        print(f"training step, {name} retina (the presets' RAM, batch 256, {net.config.glimpses} glimpses): "
              f"{median_ms(step, args.repeats):.1f} ms")
    print(f"threads {args.threads}; load {load0[0]:.2f} -> {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
