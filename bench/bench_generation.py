"""Bulk synthesis speed: `training.synthesis.sampling.generate` against a plain save_image loop, same run.

    python bench/bench_generation.py                            # 6,000 images, 64 px RGB, dcgan_hinge G
    python bench/bench_generation.py --config experiments/demo_gan.yaml data.image_size=64
    python bench/bench_generation.py --processes 2               # also: the script as 1 process vs torchrun x 2

Prints seconds and images/s for
  generator only   G forward over all latents in batches (the floor any tool pays)
  plain loop       G in batches + torchvision.utils.save_image per image, one process, no manifest
  ours             generate(): per-image seeds, parallel PNG workers, atomic writes, manifest.jsonl
and the time ours spends beyond the generator (the overhead the issue asks to keep small).
With --processes P, also training/generate_samples.py run as one process and under torchrun as P
(each takes an index range; torchrun gives each 1 thread and CPU count / P PNG workers): wall time
with start-up, and the bulk part the script reports.
The generator has random weights: speed does not depend on what it learnt.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torchvision.utils import save_image

from training.core.cli import Parser
from training.core.config import load_config
from training.core.runtime import resolve_device
from training.gan.checkpoint import save_generator
from training.gan.config import GANConfig
from training.gan.networks import build_generator
from training.synthesis import sampling

ROOT = Path(__file__).resolve().parents[1]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def script_run(launcher: list[str], ckpt: Path, out: Path, args: argparse.Namespace) -> tuple[float, float]:
    """(wall seconds with start-up, bulk seconds the script reports) of one generate_samples.py job."""
    command = [*launcher, "training/generate_samples.py", "--checkpoint", str(ckpt), "--num_samples", str(args.num),
               "--batch_size", str(args.batch_size), "--device", args.device, "--output_dir", str(out), "--yes"]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    return wall, float(re.search(r" in ([0-9.]+) s", result.stdout).group(1))


def main() -> None:
    p = Parser(__doc__)
    p.add_argument("--config", default="experiments/dcgan_hinge.yaml")
    p.add_argument("--num", type=int, default=6000)
    p.add_argument("--batch_size", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--workdir", default="results", help="scratch folder (on this machine /tmp creates files ~20x slower)")
    p.add_argument("--processes", type=int, default=0, help="also time the script as 1 process vs torchrun with this many")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    device = resolve_device(args.device)
    cfg = load_config(GANConfig, args.config, args.overrides)
    torch.manual_seed(0)
    G = build_generator(cfg.model, cfg.data).to(device).eval()
    params = sum(p.numel() for p in G.parameters()) / 1e6
    print(f"{args.num} images, {cfg.data.image_size} px, {cfg.data.channels} ch, G {params:.2f} M "
          f"params, batch {args.batch_size}, {device}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}")

    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        tmp = Path(tmp)
        ckpt = tmp / "g.pth"
        save_generator(ckpt, G, cfg, epoch=0)
        z = torch.randn(args.num, G.z_dim)

        @torch.no_grad()
        def generator_only():
            for i in range(0, args.num, args.batch_size):
                G(z[i:i + args.batch_size].to(device)).cpu()

        @torch.no_grad()
        def plain_loop():
            out = Path(tempfile.mkdtemp(dir=tmp))
            for i in range(0, args.num, args.batch_size):
                for k, image in enumerate(G(z[i:i + args.batch_size].to(device)).cpu()):
                    save_image(image, out / f"{i + k:06d}.png", normalize=True, value_range=(-1, 1))

        def ours():
            out = Path(tempfile.mkdtemp(dir=tmp))
            loaded = sampling.load_generators([ckpt], device)
            sampling.generate(loaded, [1.0], args.num, 0, out, batch_size=args.batch_size, device=device)
            assert len(list(out.glob("synthetic_*.png"))) == args.num

        generator_only()                                   # warm-up (allocator, oneDNN kernels)
        variants = {"generator only": generator_only, "plain loop": plain_loop, "ours": ours}
        results = {name: float("inf") for name in variants}
        for _ in range(args.repeats):                      # interleaved, best of N: this machine's timings vary
            for name, fn in variants.items():
                results[name] = min(results[name], timed(fn))
        launchers = {"script, 1 process": [sys.executable]} if args.processes else {}
        if args.processes:
            launchers[f"torchrun x {args.processes}"] = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                         "--nproc_per_node", str(args.processes)]
        split = {name: (float("inf"), float("inf")) for name in launchers}
        for _ in range(args.repeats):
            for name, launcher in launchers.items():
                split[name] = min(split[name], script_run(launcher, ckpt, Path(tempfile.mkdtemp(dir=tmp)) / "out", args))
    for name, seconds in results.items():
        print(f"  {name:15s} {seconds:7.2f} s  {args.num / seconds:8.0f} img/s")
    base = results["generator only"]
    print(f"  beyond the generator: plain loop {results['plain loop'] - base:.2f} s, ours {results['ours'] - base:.2f} s; "
          f"ours / plain = {results['ours'] / results['plain loop']:.2f}")
    for name, (wall, bulk) in split.items():
        print(f"  {name:18s} {wall:7.2f} s with start-up, bulk {bulk:6.2f} s  {args.num / bulk:8.0f} img/s")


if __name__ == "__main__":
    main()
