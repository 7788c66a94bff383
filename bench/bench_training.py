"""Training throughput: our trainer against a plain PyTorch loop of the same networks and batch.

    python bench/bench_training.py                      # demo data, 64 px hinge config, CPU
    python bench/bench_training.py --device cuda --image-size 128

Prints images/s (D real images per second) for
  plain       a bare hinge-loss loop over the same G and D (no augmentation, EMA, checkpoints, metrics)
  trainer     train_gan with DiffAugment and EMA off, metrics only at the end (the same work as plain)
  trainer+    train_gan as shipped: DiffAugment + EMA, FID/KID every epoch
and the ratios, then (with --demo) the wall time of experiments/demo_gan.yaml end to end.
Per-epoch time comes from the trainer's own loss history, so set-up (data loading, the cached
domain encoder) is reported apart.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from training.core.cli import Parser
from training.core.config import load_config
from training.core.runtime import resolve_device
from training.data.folders import load_class, to_float
from training.gan.config import GANConfig
from training.gan.loop import train_gan
from training.gan.losses import LOSSES
from training.gan.networks import build_discriminator, build_generator


def plain_loop(cfg: GANConfig, epochs: int) -> float:
    """images/s of the simplest correct loop over the same networks, batch and optimiser."""
    device = resolve_device(cfg.train.device)
    real = load_class(cfg.data.root, "train", cfg.data.minority_class, cfg.data.image_size, cfg.data.channels)
    torch.manual_seed(0)
    G = build_generator(cfg.model, cfg.data).to(device)
    D = build_discriminator(cfg.model, cfg.data, cfg.loss.name).to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.train.lr_g, betas=cfg.train.betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.train.lr_d, betas=cfg.train.betas)
    bs = min(cfg.train.batch_size, len(real))
    batches = len(real) // bs
    seen, start = 0, None
    for epoch in range(epochs + 1):          # epoch 0 is warm-up, not timed
        if epoch == 1:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        order = torch.randperm(len(real))
        for b in range(batches):
            x = to_float(real[order[b * bs:(b + 1) * bs]]).to(device)
            fake = G(torch.randn(bs, G.z_dim, device=device))
            d_loss = LOSSES["hinge"].d_loss(D(x), D(fake.detach()))
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            g_loss = LOSSES["hinge"].g_loss(D(G(torch.randn(bs, G.z_dim, device=device))))
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
            seen += bs if epoch > 0 else 0
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - start)


def trainer(cfg: GANConfig, epochs: int, workdir: Path, name: str, **changes) -> tuple[float, float]:
    """(images/s over epochs 2.., wall seconds of the whole call) of train_gan."""
    changes = {s: dict(v) for s, v in changes.items()}
    changes.setdefault("train", {}).update(epochs=epochs + 1, checkpoint_every=10_000)
    changes["output"] = {"name": name, "results_dir": str(workdir / "results"), "synthetic_dir": str(workdir / "synthetic")}
    cfg = dataclasses.replace(cfg, **{s: dataclasses.replace(getattr(cfg, s), **v) for s, v in changes.items()})
    start = time.perf_counter()
    train_gan(cfg, overwrite=True)
    wall = time.perf_counter() - start
    losses = json.loads((workdir / "results" / "gan" / name / "losses.json").read_text())
    n = len(load_class(cfg.data.root, "train", cfg.data.minority_class, cfg.data.image_size, cfg.data.channels))
    batch = min(cfg.train.batch_size, n)
    timed = losses[1:]                              # epoch 1 is warm-up
    return (n // batch) * batch * len(timed) / sum(h["seconds"] for h in timed), wall


def main() -> None:
    p = Parser(__doc__)
    p.add_argument("--config", default="experiments/dcgan_hinge.yaml")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--device", default="cpu")
    p.add_argument("--image_size", type=int)
    p.add_argument("--demo", action="store_true", help="also time experiments/demo_gan.yaml end to end")
    args = p.parse_args()
    overrides = [f"train.device={args.device}", "metrics.num_samples=500"]
    if args.image_size:
        overrides.append(f"data.image_size={args.image_size}")
    cfg = load_config(GANConfig, args.config, overrides)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, "
          f"{cfg.data.image_size} px, batch {cfg.train.batch_size}, config {args.config}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        plain = plain_loop(cfg, args.epochs)
        bare, _ = trainer(cfg, args.epochs, tmp, "bare", train={"diffaugment": None, "ema_decay": None},
                          metrics={"every": 0})
        full, wall_quiet = trainer(cfg, args.epochs, tmp, "full", metrics={"every": 0})
        _, wall_monitored = trainer(cfg, args.epochs, tmp, "monitored", metrics={"every": 1})
        epochs = args.epochs + 1
        print(f"plain loop                          {plain:8.1f} img/s")
        print(f"trainer, same work (no aug, no EMA) {bare:8.1f} img/s   ratio to plain {bare / plain:.2f}")
        print(f"trainer as shipped (DiffAug + EMA)  {full:8.1f} img/s   ratio to plain {full / plain:.2f}")
        print(f"wall for {epochs} epochs: FID/KID at the end only {wall_quiet:.1f} s, "
              f"every epoch {wall_monitored:.1f} s ({(wall_monitored - wall_quiet) / (epochs - 1):.2f} s per extra evaluation)")
    if args.demo:
        import subprocess
        start = time.perf_counter()
        subprocess.run([sys.executable, "training/train_dcgan.py", "--config", "experiments/demo_gan.yaml",
                        "--overwrite", f"--device={args.device}", "output.name=bench_demo_gan"], check=True)
        print(f"demo_gan.yaml end to end: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
