"""Data-parallel and precision throughput of the GAN trainer, launched through torchrun.

    python bench/bench_distributed.py                            # CPU: 1 vs 2 processes (gloo)
    python bench/bench_distributed.py --device cuda --nproc 1 --precision fp32 bf16 --image-size 64 128

Each setting is a real `torchrun ... training/train_dcgan.py` run on every class of the demo data
(so an epoch has tens of steps), with the global batch fixed, so all settings do the same work.
images/s = D's real images per second over epochs 2.. (epoch 1 is warm-up), from the trainer's own
per-epoch timings; start-up and the final FID evaluation are not counted. The CPU cores are shared
out: each of N processes gets cores / N threads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from training.core.cli import Parser

REPO = Path(__file__).resolve().parents[1]


def run(nproc: int, device: str, image_size: int, precision: str, epochs: int, batch: int, config: str,
        workdir: Path, threads: int) -> float:
    name = f"bench_{nproc}p_{device}_{image_size}_{precision}"
    overrides = [f"train.device={device}", f"data.image_size={image_size}", f"train.precision={precision}",
                 f"train.epochs={epochs}", f"train.batch_size={batch}", "train.checkpoint_every=100000",
                 "data.train_on=all_classes", "metrics.every=0", "metrics.num_samples=100", f"output.name={name}",
                 f"output.results_dir={workdir / 'results'}", f"output.synthetic_dir={workdir / 'synthetic'}"]
    if precision != "fp32":
        overrides.append("train.channels_last=true")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
                    "training/train_dcgan.py", "--config", config, *overrides],
                   cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
    losses = json.loads((workdir / "results" / "gan" / name / "losses.json").read_text())
    info = json.loads((workdir / "results" / "gan" / name / "run_info.json").read_text())
    images = info["training_images"] // info["global_batch_size"] * info["global_batch_size"]
    timed = losses[1:]
    return images * len(timed) / sum(h["seconds"] for h in timed)


def main() -> None:
    p = Parser(__doc__)
    p.add_argument("--config", default="experiments/demo_gan.yaml")
    p.add_argument("--device", default="cpu")
    p.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    p.add_argument("--precision", nargs="+", default=["fp32"])
    p.add_argument("--image_size", type=int, nargs="+", default=[64])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=64, help="global batch (split over the processes)")
    args = p.parse_args()
    cores = os.cpu_count() or 1
    import torch

    gpu = torch.cuda.get_device_name(0) if args.device == "cuda" else None
    print(f"torch {torch.__version__}, {cores} CPU cores, device {gpu or 'cpu'}, global batch {args.batch}, "
          f"{args.epochs} epochs of the demo data (all classes)")
    print(f"{'processes':>9} {'px':>4} {'precision':>9} {'img/s':>9} {'vs first at this size':>22}")
    (REPO / "results").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=REPO / "results") as tmp:     # /tmp is slow to create files here
        for size in args.image_size:
            first = None
            for precision in args.precision:
                for nproc in args.nproc:
                    threads = max(1, cores // nproc) if args.device == "cpu" else max(1, cores // (2 * nproc))
                    rate = run(nproc, args.device, size, precision, args.epochs, args.batch, args.config,
                               Path(tmp), threads)
                    first = first or rate
                    print(f"{nproc:>9} {size:>4} {precision:>9} {rate:>9.1f} {rate / first:>21.2f}x", flush=True)


if __name__ == "__main__":
    main()
